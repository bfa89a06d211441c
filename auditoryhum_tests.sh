#!/usr/bin/env bash
# The experiment of the AuditoryHuM paper (Zhong et al., arXiv 2602.19409) on ADVANCE, AHEAD-DS and
# TAU 2019: labels from three audio LLMs, with and without the published human annotations, CLAP
# scores and the score boost, sentence embeddings of the Qwen2.5-Omni kept labels, agglomerative and
# spectral clustering at k = 2, the chosen k and the number of distinct labels, composite-label
# statistics, and the adjusted-silhouette sweep over k = 2..840 (one process, not one per k).
#
#   ./auditoryhum_tests.sh              run it (labelling needs a GPU and the model folders)
#   ./auditoryhum_tests.sh --dry-run    print every command instead (also: DRY_RUN=1)
#
# Settings (environment): WORK (output folder), MODELS (folder of the `git clone`d models, as in
# README), each *_MODEL, PYTHON, USE_PROVIDED_LABELS=1 (copy the labels published with the
# annotations instead of generating them). Downloads and labelling resume when rerun.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN="${DRY_RUN:-0}"
case "${1:-}" in
  --dry-run | -n) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-$REPO/paper_run}"
MODELS="${MODELS:-$REPO}"
GEMMA3N_MODEL="${GEMMA3N_MODEL:-$MODELS/gemma-3n-E2B-it-unsloth-bnb-4bit}"
QWEN2A_MODEL="${QWEN2A_MODEL:-$MODELS/Qwen2-Audio-7B-Instruct}"
QWEN2_5O_MODEL="${QWEN2_5O_MODEL:-$MODELS/Qwen2.5-Omni-7B}" # the published script's; its README clones the 3B
CLAP_MODEL="${CLAP_MODEL:-$MODELS/human-clap-wsce-mse-mae}"
ST_MODEL="${ST_MODEL:-$MODELS/all-mpnet-base-v2}"
USE_PROVIDED_LABELS="${USE_PROVIDED_LABELS:-0}"

DATASETS=(advance ahead-ds tau2019)
LABELLERS=( # file stem | script | model flag | model
  "gemma3n_e2b|label_gemma3n.py|--gemma3n_model|$GEMMA3N_MODEL"
  "qwen2a|label_qwen2a.py|--qwen2a_model|$QWEN2A_MODEL"
  "qwen2_5o|label_qwen2_5o.py|--qwen2_5o_model|$QWEN2_5O_MODEL"
)
# The paper's k (maximum of the adjusted silhouette) and the number of distinct Qwen2.5-Omni labels.
chosen_k() { case $1 in advance) echo 152 ;; ahead-ds) echo 67 ;; tau2019) echo 116 ;; esac; }
unique_labels() { case $1 in advance) echo 668 ;; ahead-ds) echo 435 ;; tau2019) echo 639 ;; esac; }

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

get_clips() { # the dataset's WAV files into the folder named after it (resumable, verified)
  case $1 in
    advance) run "$PYTHON" -m auditoryhum.datasets advance --dest advance ;; # Zenodo 3828124 ADVANCE_sound.zip
    ahead-ds) run hf download hzhongresearch/ahead_ds --repo-type dataset --include '*.wav' --local-dir ahead-ds ;;
    tau2019) run "$REPO/tau2019.sh" --dest tau2019 ;; # Zenodo 2589280, 21 parts
  esac
}

experiment() { # everything for one dataset
  local ds=$1 clips="$1/*.wav" entry stem script flag model labels variant algo k out
  say "$ds"
  get_clips "$ds"
  py util_resample.py --filedir "$clips" --sampling_rate 16000 --bits s16 --channels 1
  py features_clap.py --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy "${ds}_clap.npy"
  for entry in "${LABELLERS[@]}"; do
    IFS='|' read -r stem script flag model <<<"$entry"
    labels="${ds}_${stem}_labels"
    if [[ $USE_PROVIDED_LABELS == 1 ]]; then run cp "supplementary/$labels.csv" "$labels.csv"
    else py "$script" --filedir "$clips" "$flag" "$model" --text_label_csv "$labels.csv"; fi
    py util_merge_csv.py --csv1 "$labels.csv" --csv2 "supplementary/${labels}_annotations.csv" --csv3 "${labels}_combined.csv"
    for variant in "$labels" "${labels}_combined"; do # without, then with the human annotations
      py features_clap_text.py --filedir "$clips" --clap_model "$CLAP_MODEL" --clap_npy "${ds}_clap.npy" \
        --text_label_csv "$variant.csv" --top_label_scores_csv "${variant}_scores.csv"
    done
    py util_score_boost.py --csv1 "${labels}_scores.csv" --csv2 "${labels}_combined_scores.csv" \
      --csv3 "supplementary/${labels}_annotations.csv"
  done
  py features_st.py --st_model "$ST_MODEL" --label_csv "${ds}_qwen2_5o_labels_scores.csv" --st_npy "${ds}_st.npy"
  for algo in ag spectral; do
    for k in 2 "$(chosen_k "$ds")" "$(unique_labels "$ds")"; do
      out="${ds}_${algo}_${k}_st"
      py "cluster_${algo}.py" --cluster_npy "${ds}_st.npy" --n_clusters "$k" --label_csv "$out.csv" --png_plot "$out.png"
      py_to "${out}_composite.txt" composite_label_stats.py --label_csv "$out.csv" \
        --top_label_scores_csv "${ds}_qwen2_5o_labels_scores.csv"
    done
  done
  py cluster_sweep.py --cluster_npy "${ds}_st.npy" --algorithm ag --k_min 2 --k_max 840 \
    --sweep_csv "${ds}_st_silhouette.csv" --png_plot "${ds}_st_silhouette.png"
}

if [[ $DRY_RUN != 1 ]] && ! command -v hf >/dev/null; then
  echo "$0: error: the Hugging Face CLI 'hf' is needed for AHEAD-DS and the annotations: pip install huggingface_hub" >&2
  exit 1
fi
run export "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" # for python3 -m auditoryhum.datasets
run mkdir -p "$WORK"
run cd "$WORK"
say "human annotations (and the labels published with them)"
run hf download hzhongresearch/auditoryhum_supplementary --repo-type dataset --include '*.csv' --local-dir supplementary
for ds in "${DATASETS[@]}"; do experiment "$ds"; done
