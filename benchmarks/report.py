"""Print the README's benchmark tables (markdown) from benchmarks/results/*.json.

    python -m benchmarks.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rd_table(r: dict) -> str:
    lines = [
        f"**Rate–distortion on Kodak** (`python -m benchmarks.rd`; {r['images']} images, codec `{r['codec_id']}`; "
        "bpp from the bytes written). Plot: `benchmarks/results/rd.png`.",
        "",
        "| quality | bpp | PSNR (dB) | MS-SSIM | encode ms/image | decode ms/image |",
        "|---|---|---|---|---|---|",
    ]
    n = r["images"]
    for p in r["mostore"]:
        lines.append(f"| {p['quality']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
                     f"{1e3 * p['encode_s'] / n:.1f} | {1e3 * p['decode_s'] / n:.1f} |")
    s = r["speed"]
    lines += [
        "",
        f"* BD-rate (PSNR) vs Pillow JPEG: **{r['bd_rate_vs_jpeg_pct']:+.1f}%**; vs Pillow WebP: "
        f"**{r['bd_rate_vs_webp_pct']:+.1f}%**; vs published bmshj2018-hyperprior: {r['bd_rate_vs_published_hyperprior_pct']:+.1f}% "
        f"(WebP vs JPEG in the same run: {r['bd_rate_webp_vs_jpeg_pct']:+.1f}%).",
        f"* Encode {s['mostore_encode_ms_per_image']:.1f} ms per Kodak image ({s['mostore_encode_mpx_s']:.1f} Mpx/s), "
        f"**{s['encode_ratio_vs_jpeg']:.3f}×** Pillow JPEG's {s['jpeg_encode_ms_per_image']:.2f} ms measured in the same run; "
        f"decode {s['mostore_decode_ms_per_image']:.1f} ms ({s['decode_ratio_vs_jpeg']:.3f}× JPEG's {s['jpeg_decode_ms_per_image']:.2f} ms).",
        f"* What mostore's one encoder replaces at ingest: JPEG encode + a ResNet-18-sized embedding forward pass at "
        f"224×224 ({s['resnet18_224_forward_ms']:.1f} ms on its own, here).",
    ]
    return "\n".join(lines)


def dedup_table(r: dict) -> str:
    return "\n".join([
        f"**Near-duplicate search** (`python -m benchmarks.dedup`): {r['images']} Imagenette val images stored, "
        f"each queried by a copy {r['variant']}.",
        "",
        "| recall@1 | recall@10 | class precision@10 | bytes/item | ingest img/s | search-by-image q/s |",
        "|---|---|---|---|---|---|",
        f"| {r['recall_at_1']:.4f} | {r['recall_at_10']:.4f} | {r['class_precision_at_10']:.3f} | "
        f"{r['bytes_per_item']:.0f} ({r['bpp']:.3f} bpp) | {r['ingest_images_per_s']:.1f} | {r['queries_per_s']:.1f} |",
    ])


def tasks_table(r: dict) -> str:
    c, cost, q0 = r["classification"], r["cost"], str(r["default_quality"])
    names = (("latent", "mostore latents ŷ (entropy decode only)"), ("decoded", "pixels decoded from mostore, 112×112"),
             ("original", "original pixels, 112×112"))
    n = len(c["latent"].get("top1_by_seed", [0]))
    seeds = f", mean of {n} seeds" if n > 1 else ""

    def spread(v: dict) -> str:
        runs = v.get("top1_by_seed", [])
        return f" ({min(runs):.3f}–{max(runs):.3f})" if len(runs) > 1 else ""

    command = f"python -m benchmarks.tasks --epochs {r['epochs']}" + (f" --seeds {n}" if n > 1 else "") + (
        f" --width {r['width']}" if r.get("width", 64) != 64 else "")
    lines = [
        f"**Classification, latents vs pixels** (`{command}`; Imagenette: "
        f"{r['train_images']} train images × {r['train_views'] // r['train_images']} augmented views, "
        f"{r['val_images']} val; the same {cost['latent']['macs'] / 1e6:.0f} M-MAC head, same views, epochs and seeds, "
        f"on 192×14×14 inputs). Time and MACs are per image from the stored bytes to class scores. "
        "Plot: `benchmarks/results/tasks.png` (top-1 vs bpp at every quality level).",
        "",
        f"| input | top-1 (val, quality {q0}){seeds} | MACs per image | ms per image | time vs decoded path |",
        "|---|---|---|---|---|",
        *(f"| {name} | **{c[k]['top1']:.3f}**{spread(c[k])} | {cost[k]['macs'] / 1e6:.0f} M | "
          f"{cost[k]['ms_per_image']:.1f} | {cost[k]['time_vs_decoded']:.2f}× |" for k, name in names),
        *([
            "",
            "Seed by seed (latents − original pixels): " + ", ".join(
                f"{a - b:+.3f}" for a, b in zip(c["latent"]["top1_by_seed"], c["original"]["top1_by_seed"])) + ".",
        ] if n > 1 else []),
        "",
        "| quality | bpp | top-1 from latents | top-1 from decoded pixels |",
        "|---|---|---|---|",
        *(f"| {q} | {c['latent']['by_quality'][q]['bpp']:.3f} | {c['latent']['by_quality'][q]['top1']:.3f} | "
          f"{c['decoded']['by_quality'][q]['top1']:.3f} |" for q in sorted(c["latent"]["by_quality"], key=int)),
    ]
    sc = r.get("store_classifier")
    if sc:
        trunk = "trunk from the shipped embedding" if sc["pretrained_trunk"] else "trunk trained from scratch"
        lines += [
            "",
            f"**The store's classifier, as a user runs it** (`--parts store`): the {sc['train_items']:,} train "
            "images ingested into a table with their class, `tbl.fit_classifier(\"nette\", label=\"label\")` with "
            f"its defaults ({sc['epochs']} epochs, {sc['n_train']:,} rows trained, {sc['n_val']:,} held out, {trunk}) "
            f"took {sc['fit_s']:.0f} s and reported {sc['held_out_accuracy']:.3f} on its held-out rows (train images, "
            f"which the shipped embedding saw while it trained); `tbl.classify(file)` on the {sc['val_images']:,} val "
            f"files: top-1 **{sc['val_top1']:.3f}** ({sc['classify_ms_per_image']:.1f} ms per image, encode included).",
        ]
    ret = r["retrieval"]
    lines += [
        "",
        "**Near-duplicates and class consistency** (`--parts retrieval`): all val images stored (clean, quality "
        f"{q0}); each queried by one random variant (crop ≤20%, resize 0.5–1×, brightness/contrast ±15%, "
        "flip p=0.5, JPEG q30–90).",
        "",
        "| embedding | dim | recall@1 | recall@10 | class precision@10 |",
        "|---|---|---|---|---|",
        *(f"| {name} (`{v['embedder']}`) | {v['dim']} | {v['recall@1']:.4f} | {v['recall@10']:.4f} | "
          f"{v['class_precision@10']:.3f} |" for name, v in (
              ("store's learned embedding, as search by image queries it", ret.get("store")),
              ("the same, from the query's own latents only", ret.get("own_latents")),
              ("fixed pooling (older tables)", ret.get("pooled")),
              ("8×8 RGB thumbnail", ret.get("thumbnail"))) if v),
    ]
    s = r["storage"]
    lines += [
        "",
        f"**Storage per item** ({s['images']} val images at quality {q0}, {s['psnr']:.2f} dB): mostore "
        f"{s['mostore_bytes']:.0f} B (image + search + classification) vs the smallest Pillow JPEG with the same "
        f"PSNR {s['jpeg_bytes']:.0f} B + a float32 embedding {s['embedding_bytes']} B = "
        f"{s['jpeg_plus_embedding_bytes']:.0f} B: **{s['ratio']:.2f}×**.",
    ]
    return "\n".join(lines)


def multitask_table(r: dict) -> str:
    b, m = r["baseline"], r["multitask"]
    return "\n".join([
        f"**Multitask codec** (`python -m benchmarks.multitask --weights runs/multitask/codec.pt`): the shipped codec "
        "fine-tuned with rate + distortion + a classification loss on ŷ (`python -m mostore.multitask`), then the "
        f"same fresh latent head ({r['epochs']} epochs, same views and seed) trained on each codec's latents.",
        "",
        "| codec | top-1 from latents (val) | val bpp | Kodak BD-rate vs shipped |",
        "|---|---|---|---|",
        f"| shipped `{b['codec_id']}` | {b['top1']:.3f} | {b['val_bpp']:.3f} | 0 |",
        f"| multitask `{m['codec_id']}` | {m['top1']:.3f} | {m['val_bpp']:.3f} | {r['kodak_bd_rate_pct']:+.1f}% |",
    ])


def search_table(r: dict) -> str:
    lines = [
        f"**Search at scale** (`python -m benchmarks.search`): {r['n']:,} stored {r['dim']}-d vectors synthesised from"
        f" real embeddings, {r['queries']} queries, {r['threads']} threads, recall@10 against exact search. Raw FAISS"
        " is the very index mostore built, queried one vector at a time like an API call. Plot:"
        " `benchmarks/results/search.png`.",
        "",
        "| index | nprobe | recall@10 | raw FAISS q/s | mostore q/s (ids + scores) | mostore / raw | mostore q/s with"
        " rows | 1% filter q/s | 10% filter q/s | filtered: exactly k, all match |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        f1, f10 = x["filtered_1%"], x["filtered_10%"]
        ok = all(f["exactly_k"] and f["all_match"] for f in (f1, f10))
        lines.append(f"| {x['kind']} | {x['nprobe'] or '-'} | {x['recall_mostore']:.3f} | {x['raw_qps']:.0f} |"
                     f" {x['mostore_qps']:.0f} | {x['mostore_over_raw']:.2f}x | {x['mostore_with_rows_qps']:.0f} |"
                     f" {f1['qps']:.0f} | {f10['qps']:.0f} | {'yes' if ok else 'NO'} |")
    https = r["http"] if isinstance(r["http"], list) else [r["http"]]
    lines += ["", f"Over HTTP ({https[0]['clients']} concurrent clients on one uvicorn server, the same query form): "
              + "; ".join(f"{h['kind']}{' nprobe ' + str(h['nprobe']) if h['nprobe'] else ''}: {h['qps']:.0f} q/s"
                          f" ({h['over_in_process']:.2f}x in-process, {h['errors']} errors)" for h in https) + "."]
    return "\n".join(lines)


def ingest_table(r: dict) -> str:
    b = r["best"]
    names = {"mostore": "mostore (`Table.add`)", "jpeg_resnet18_lance": "JPEG q85 + ResNet-18 + Lance",
             "jpeg_lance": "JPEG q85 + Lance (no search)"}
    lines = [
        f"**Ingest** (`python -m benchmarks.ingest`): {r['images']} Imagenette val files, batches of {r['batch']},"
        f" {r['threads']} threads, best of {len(r['rounds'])} alternating rounds.",
        "",
        "| pipeline | images/s | stored bytes/item | ms per image by stage |",
        "|---|---|---|---|",
    ]
    for k, v in b.items():
        split = ", ".join(f"{s} {1e3 * t / r['images']:.2f}" for s, t in v["stages_s"].items())
        lines.append(f"| {names.get(k, k)} | {v['images_per_s']:.1f} | {v['bytes_per_item']:.0f} | {split} |")
    lines += ["", f"mostore ingests at **{r['speedup_vs_jpeg_resnet18_lance']:.2f}x** the rate of JPEG + ResNet-18 +"
                  f" Lance ({r['speedup_vs_jpeg_lance']:.2f}x JPEG + Lance alone)."]
    ls = r.get("latency_storage")
    if ls:
        lines.append(
            f"Per item ({ls['items']} stored): reconstruct {ls['ms']['reconstruct']:.1f} ms"
            f" ({ls['reconstruct_vs_jpeg_decode']:.1f}x decoding the JPEG of equal PSNR, {ls['ms']['jpeg_decode']:.2f} ms);"
            f" classify {ls['ms']['classify']:.1f} ms ({ls['classify_vs_jpeg_decode']:.1f}x the JPEG decode,"
            f" {ls['classify_vs_jpeg_decode_resnet18']:.2f}x JPEG decode + ResNet-18). On disk the table (Lance files +"
            f" index) takes {ls['table_bytes_per_item']:.0f} B/item ({ls['latent_bytes_per_item']:.0f} B of latents) vs"
            f" {ls['jpeg_plus_float32_embedding_bytes']:.0f} B for the JPEG at {ls['psnr']:.2f} dB + a float32"
            f" embedding: {ls['table_vs_jpeg_plus_embedding']:.2f}x.")
    if r.get("rss"):
        marks = ", ".join(f"{int(k):,} items: {v['peak_rss_mib']:.0f} MiB ({v['index_kind']})" for k, v in r["rss"].items())
        lines.append(f"Peak RSS while ingesting 96x96 augmented images in batches of 64: {marks}.")
    return "\n".join(lines)


def reliability_table() -> str:
    """One table from the four reliability results (whichever exist)."""
    files = {k: RESULTS / f for k, f in (("crash", "reliability-crash.json"), ("conc", "reliability-concurrency.json"),
                                         ("hostile", "hostile.json"), ("fuzz", "fuzz.json"))}
    r = {k: json.loads(p.read_text()) for k, p in files.items() if p.exists()}
    if not r:
        return ""
    rows = ["| check | command | tried | failures |", "|---|---|---|---|"]
    if "crash" in r:
        for kind, label in (("api", "SIGKILL during Python-API ingest"), ("http", "SIGKILL of the server under adds + searches")):
            c = r["crash"][kind]
            stages = ", ".join(f"{s} {n}" for s, n in c["kills_by_stage"].items() if n)
            extra = f"; {c['searches']} searches, 5xx: {c['server_errors']}" if kind == "http" else ""
            rows.append(f"| {label} | `python -m benchmarks.reliability crash` | {c['kills']} kills ({stages});"
                        f" {c['acked_items']} items acknowledged{extra} | items lost {c['items_lost']}, partial batches"
                        f" {c['partial_batches']}, duplicate ids {c['duplicate_ids']}, damaged rows {c['damaged_rows']},"
                        f" index disagreements {c['index_disagreements']} |")
    if "conc" in r:
        for mode, c in r["conc"].items():
            if not isinstance(c, dict):
                continue
            p = c["processes"]
            ops = sum(v["ops"] for v in c["ops"].values())
            rows.append(f"| concurrent clients ({'one server, ' if mode == 'http' else ''}{p['writers']} writers,"
                        f" {p['deleters']} deleter, {p['searchers']} searchers, {c['seconds']:.0f} s)"
                        f" | `python -m benchmarks.reliability concurrency` | {ops} operations, {c['items_added']} added,"
                        f" {c['items_deleted']} deleted | reader errors {c['reader_errors']}, writer conflicts"
                        f" {c['writer_conflicts']}, lost writes {c['lost_writes']}, duplicate ids {c['duplicate_ids']} |")
    if "hostile" in r:
        h = r["hostile"]
        http = sum(x["http_cases"] for x in h["summary"])
        api = sum(x["api_cases"] for x in h["summary"])
        rows.append(f"| hostile input ({len(h['summary'])} kinds) | `python -m benchmarks.hostile` | {http} over HTTP,"
                    f" {api} through the API | 5xx {sum(x['http_5xx'] for x in h['summary'])}, untyped"
                    f" {api - sum(x['api_typed'] for x in h['summary'])}, data changed"
                    f" {sum(x['data_changed'] for x in h['summary'])} |")
    if "fuzz" in r:
        a, s = r["fuzz"]["atheris"], r["fuzz"]["schemathesis"]
        rows.append(f"| atheris on bitstream, decoder, image loader | `python -m benchmarks.fuzz` | {a['runs']} inputs"
                    f" | crashes or hangs {0 if a['ok'] else 1} |")
        rows.append(f"| schemathesis on the OpenAPI schema | `python -m benchmarks.fuzz` | {s['requests']} requests,"
                    f" {s['operations']} operations | 5xx {s['server_errors']} |")
    return "\n".join(rows)


def main() -> int:
    parts = []
    for name, fn in (("rd.json", rd_table), ("dedup.json", dedup_table), ("tasks.json", tasks_table),
                     ("multitask.json", multitask_table), ("search.json", search_table),
                     ("ingest.json", ingest_table)):
        path = RESULTS / name
        if path.exists():
            parts.append(fn(json.loads(path.read_text())))
    parts.append(reliability_table())
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
