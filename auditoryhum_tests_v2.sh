#!/usr/bin/env bash
# The experiment of the method's later revision (prism-ml commits b098f36 / e739591, scripts
# auditoryhum_test_1_label_alignment.sh .. auditoryhum_test_4_cluster.sh) on ADVANCE, AHEAD-DS and
# TAU 2019, with this toolkit's scripts. See docs/revision-2.md.
#
#   test 1  label alignment of three audio LLMs (--label_limit 2), with and without the human
#           annotations, score boost; ADVANCE also with the human labelling strategy
#   test 2  alignment of the datasets' own labels and of free captions (no word limit); the
#           revision captions with llama.cpp and a GGUF Qwen2.5-Omni-3B, here the labeller's
#           caption task (label_qwen2_5o.py --task caption) on the Hugging Face Qwen2.5-Omni-3B
#   test 3  class vectors of the three datasets (features_cvector.py)
#   test 4  spectral sweeps k = 2..50 on the CLAP, sentence and class-vector features (one
#           cluster_sweep.py each); the 5 / 6 / 5 clusterings of the class vectors and their
#           composite statistics
#
#   ./auditoryhum_tests_v2.sh              run it (labelling needs a GPU and the model folders)
#   ./auditoryhum_tests_v2.sh --dry-run    print every command instead (also: DRY_RUN=1)
#
# Settings (environment): WORK (output folder), MODELS (folder of the `git clone`d models), each
# *_MODEL, PYTHON, USE_PROVIDED_LABELS=1 (copy the labels and captions published in the
# supplementary data instead of generating them). Unlike the revision's scripts, clips are
# fetched once per dataset into their own folder, nothing is recomputed twice (the revision
# repeats features_clap.py in tests 2-3 and the Qwen2.5-Omni labelling and scoring in test 3,
# with identical results), and test 4 reads only files tests 1-4 make (the revision's test 4
# reads *_st.npy that none of its scripts writes: features_st.py makes them here).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN="${DRY_RUN:-0}"
case "${1:-}" in
  --dry-run | -n) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-$REPO/revision2_run}"
MODELS="${MODELS:-$REPO}"
GEMMA3N_MODEL="${GEMMA3N_MODEL:-$MODELS/gemma-3n-E2B-it-unsloth-bnb-4bit}"
QWEN2A_MODEL="${QWEN2A_MODEL:-$MODELS/Qwen2-Audio-7B-Instruct}"
QWEN2_5O_MODEL="${QWEN2_5O_MODEL:-$MODELS/Qwen2.5-Omni-7B}"             # the revision's test scripts
CAPTION_MODEL="${CAPTION_MODEL:-$MODELS/Qwen2.5-Omni-3B}"             # the revision: Qwen2.5-Omni-3B-IQ4_XS.gguf
CLAP_MODEL="${CLAP_MODEL:-$MODELS/human-clap-wsce-mse-mae}"
ST_MODEL="${ST_MODEL:-$MODELS/all-mpnet-base-v2}"
USE_PROVIDED_LABELS="${USE_PROVIDED_LABELS:-0}"

DATASETS=(advance ahead-ds tau2019)
LABELLERS=( # file stem | script | model flag | model
  "gemma3n_e2b|label_gemma3n.py|--gemma3n_model|$GEMMA3N_MODEL"
  "qwen2a|label_qwen2a.py|--qwen2a_model|$QWEN2A_MODEL"
  "qwen2_5o|label_qwen2_5o.py|--qwen2_5o_model|$QWEN2_5O_MODEL"
)
FEATURES=(clap st cvector) # test 4's sweeps, in the revision's order
# The revision's chosen number of clusters of the class vectors (test 4, "optimal").
optimal_k() { case $1 in advance) echo 5 ;; ahead-ds) echo 6 ;; tau2019) echo 5 ;; esac; }

quote() { # the arguments as one line a shell reads back unchanged
  local words=() a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then words+=("$a"); else words+=("'${a//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${words[*]}"
}
run() { if [[ $DRY_RUN == 1 ]]; then quote "$@"; echo; else "$@"; fi; }
py() { run "$PYTHON" "$REPO/$1" "${@:2}"; } # py SCRIPT ARGS...: one of the toolkit's scripts
py_to() { # py_to FILE SCRIPT ARGS...: the same, its report (stdout) saved in FILE
  local out=$1; shift
  if [[ $DRY_RUN == 1 ]]; then echo "$(quote "$PYTHON" "$REPO/$1" "${@:2}") > $(quote "$out")"
  else "$PYTHON" "$REPO/$1" "${@:2}" > "$out.tmp" && mv "$out.tmp" "$out"; fi
}
say() { if [[ $DRY_RUN == 1 ]]; then echo "# $*"; else echo "== $*" >&2; fi; }
provided() { # provided NAME: copy supplementary/NAME.csv (USE_PROVIDED_LABELS=1); else return 1
  if [[ $USE_PROVIDED_LABELS == 1 ]]; then run cp "supplementary/$1.csv" "$1.csv"; else return 1; fi
}

get_clips() { # the dataset's WAV files into the folder named after it; resampled where the revision does
  case $1 in
    advance) run "$PYTHON" -m auditoryhum.datasets advance --dest advance ;; # Zenodo 3828124 ADVANCE_sound.zip
    ahead-ds) run hf download hzhongresearch/ahead_ds --repo-type dataset --include '*.wav' --local-dir ahead-ds ;;
    tau2019) run "$REPO/tau2019.sh" --dest tau2019 ;; # Zenodo 2589280, 21 parts
  esac
  # The revision resamples ADVANCE and TAU 2019 only (AHEAD-DS is published at 16 kHz mono).
  if [[ $1 != ahead-ds ]]; then
    py util_resample.py --filedir "$1/*.wav" --sampling_rate 16000 --bits s16 --channels 1
  fi
}

test1() { # label alignment, MLLM vs human + MLLM
  local ds=$1 clips="$1/*.wav" entry stem script flag model labels variant
  say "test 1: label alignment, $ds"
  get_clips "$ds"
  for entry in "${LABELLERS[@]}"; do
    IFS='|' read -r stem script flag model <<<"$entry"
    provided "${ds}_${stem}_labels" || py "$script" --filedir "$clips" "$flag" "$model" --text_label_csv "${ds}_${stem}_labels.csv"
  done
  for entry in "${LABELLERS[@]}"; do
    IFS='|' read -r stem script flag model <<<"$entry"
    labels="${ds}_${stem}_labels"
    py util_merge_csv.py --csv1 "$labels.csv" --csv2 "supplementary/${labels}_annotations.csv" --csv3 "${labels}_combined.csv"
  done
  py features_clap.py --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy "${ds}_clap.npy"
  for variant in "" _combined; do # without, then with the human annotations
    for entry in "${LABELLERS[@]}"; do
      IFS='|' read -r stem script flag model <<<"$entry"
      labels="${ds}_${stem}_labels$variant"
      py features_clap_text.py --label_limit 2 --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy "${ds}_clap.npy" \
        --text_label_csv "$labels.csv" --top_label_scores_csv "${labels}_scores.csv"
    done
  done
  for entry in "${LABELLERS[@]}"; do
    IFS='|' read -r stem script flag model <<<"$entry"
    labels="${ds}_${stem}_labels"
    py util_score_boost.py --csv1 "${labels}_scores.csv" --csv2 "${labels}_combined_scores.csv" \
      --csv3 "supplementary/${labels}_annotations.csv"
  done
  if [[ $ds == advance ]]; then # the human labelling strategy
    py util_merge_csv.py --csv1 advance_qwen2_5o_labels.csv --csv2 supplementary/advance_qwen2_5o_human_strat.csv \
      --csv3 advance_qwen2_5o_labels_human_strat.csv
    py features_clap_text.py --label_limit 2 --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy advance_clap.npy \
      --text_label_csv advance_qwen2_5o_labels_human_strat.csv --top_label_scores_csv advance_qwen2_5o_human_strat_scores.csv
  fi
}

test2() { # the dataset's own labels and captions, no word limit
  local ds=$1 clips="$1/*.wav"
  say "test 2: provided labels and captions, $ds"
  py features_clap_text.py --label_limit 0 --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy "${ds}_clap.npy" \
    --text_label_csv "supplementary/${ds}_provided_labels.csv" --top_label_scores_csv "${ds}_provided_labels_scores.csv"
  # One caption per clip on one line, commas turned into semicolons as the revision's sed does.
  provided "${ds}_captions" ||
    py label_qwen2_5o.py --task caption --filedir "$clips" --qwen2_5o_model "$CAPTION_MODEL" --text_label_csv "${ds}_captions.csv"
  py features_clap_text.py --label_limit 0 --candidates line --filedir "$clips" --clap_model "$CLAP_MODEL" \
    --clap_npy "${ds}_clap.npy" --text_label_csv "${ds}_captions.csv" --top_label_scores_csv "${ds}_captions_top_scores.csv"
}

test3() { # class vectors
  local ds=$1
  say "test 3: class vectors, $ds"
  py features_cvector.py --filedir "$ds/*.wav" --clap_model "$CLAP_MODEL" --scores_csv "${ds}_qwen2_5o_labels_scores.csv" \
    --cvector_npy "${ds}_cvector.npy" --clap_npy "${ds}_clap.npy"
}

test4() { # spectral sweeps, the chosen clusterings, composite statistics
  local ds feature
  say "test 4: clustering"
  for ds in "${DATASETS[@]}"; do # the sentence features test 4 needs (made by no revision script)
    py features_st.py --st_model "$ST_MODEL" --label_csv "${ds}_qwen2_5o_labels_scores.csv" --st_npy "${ds}_st.npy"
  done
  for ds in "${DATASETS[@]}"; do
    for feature in "${FEATURES[@]}"; do
      py cluster_sweep.py --cluster_npy "${ds}_${feature}.npy" --algorithm spectral --k_min 2 --k_max 50 \
        --sweep_csv "${ds}_${feature}_spectral_silhouette.csv" --png_plot "${ds}_${feature}_spectral_silhouette.png"
    done
  done
  for ds in "${DATASETS[@]}"; do
    py cluster_spectral.py --cluster_npy "${ds}_cvector.npy" --n_clusters "$(optimal_k "$ds")" \
      --label_csv "${ds}_optimal.csv" --png_plot "${ds}_optimal.png"
  done
  for ds in "${DATASETS[@]}"; do
    py_to "${ds}_optimal_composite.txt" composite_label_stats.py --label_csv "${ds}_optimal.csv" \
      --top_label_scores_csv "${ds}_qwen2_5o_labels_scores.csv"
  done
}

if [[ $DRY_RUN != 1 ]] && ! command -v hf >/dev/null; then
  echo "$0: error: the Hugging Face CLI 'hf' is needed for AHEAD-DS and the supplementary data: pip install huggingface_hub" >&2
  exit 1
fi
run export "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" # for python3 -m auditoryhum.datasets
run mkdir -p "$WORK"
run cd "$WORK"
say "human annotations, provided labels, human strategy, published labels and captions"
run hf download hzhongresearch/auditoryhum_supplementary --repo-type dataset --include '*.csv' --local-dir supplementary
for ds in "${DATASETS[@]}"; do test1 "$ds"; done
for ds in "${DATASETS[@]}"; do test2 "$ds"; done
for ds in "${DATASETS[@]}"; do test3 "$ds"; done
test4
