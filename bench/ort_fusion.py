"""Would ONNX Runtime's transformer fusions before int8 quantization speed up the embedder? (issue 30)

The ONNX backend quantizes the plain exported graph (indexer/backends.py). optimum's O2-O4 levels and ONNX
Runtime's BERT recipe fuse first (`onnxruntime.transformers.optimizer.optimize_model`, model_type bert:
EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), then quantize, so the int8 graph gets
QAttention. This bench exports the embedder once and times five graphs on the same SciFact chunks, single
process, batches of 64 sorted by length, best of two passes: torch fp32 (sentence-transformers), the plain fp32
graph, plain int8 (what the backend ships), fused fp32 and fused int8, with parity against torch.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/ort_fusion.py [--chunks 384]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

DATA = Path(os.environ.get("RAGKILN_DATASETS", ROOT.parent / "shared" / "datasets"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=384)
    ap.add_argument("--embedder", default="all-MiniLM-L6-v2")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ort-fusion.json")
    args = ap.parse_args()

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry
    from onnxruntime.transformers.optimizer import optimize_model

    from indexer.backends import _export_onnx_fp32, _quantize_onnx, cpu_isa, parity
    from indexer.embedder import load_embedder
    from indexer.exported import _OnnxRunner, pool

    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line, _ in zip(f, range(args.chunks))]
    texts = [f"{r['title']}\n{r['text']}" for r in rows]
    base = load_embedder(args.embedder, 2)
    cfg = base.model[0].auto_model.config
    work = Path(tempfile.mkdtemp(prefix="ort-fusion-"))
    _export_onnx_fp32(base, work / "plain_fp32.onnx")
    _quantize_onnx(work / "plain_fp32.onnx", work / "plain_int8.onnx")
    fused = optimize_model(str(work / "plain_fp32.onnx"), model_type="bert", num_heads=cfg.num_attention_heads,
                           hidden_size=cfg.hidden_size, opt_level=1)
    fusions = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused.save_model_to_file(str(work / "fused_fp32.onnx"))
    # the fused graph's contrib operators have no ONNX shape inference: the quantizer needs the default type
    quantize_dynamic(str(work / "fused_fp32.onnx"), str(work / "fused_int8.onnx"),
                     op_types_to_quantize=sorted(IntegerOpsRegistry), per_channel=True, reduce_range=False,
                     weight_type=QuantType.QUInt8 if cpu_isa() == "avx2" else QuantType.QInt8,
                     extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                    "DefaultTensorType": onnx.TensorProto.FLOAT})
    order = np.argsort([-len(t) for t in texts])

    def encode(runner: Any) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            enc = base.tokenizer([texts[j] for j in order[i:i + 64]], padding=True, truncation=True,
                                 max_length=base.max_tokens, return_tensors="np")
            feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}
            out.append(pool(runner(feeds), feeds["attention_mask"], "mean", True))
        vecs = np.concatenate(out)
        back = np.empty_like(vecs)
        back[order] = vecs
        return back

    def best_of_two(run: Any) -> tuple[np.ndarray, float]:
        secs = []
        for _ in range(2):
            t = time.perf_counter()
            vecs = run()
            secs.append(time.perf_counter() - t)
        return vecs, len(texts) / min(secs)

    ref, torch_speed = best_of_two(lambda: base.encode(texts, batch_size=64))
    results: dict[str, Any] = {"torch_fp32": {"chunks_per_s": round(torch_speed, 1)}}
    for name in ("plain_fp32", "plain_int8", "fused_fp32", "fused_int8"):
        runner = _OnnxRunner(work / f"{name}.onnx", 2)
        vecs, speed = best_of_two(lambda r=runner: encode(r))  # type: ignore[misc]
        results[name] = {"chunks_per_s": round(speed, 1), "x_torch": round(speed / torch_speed, 3),
                         "parity": parity(ref, vecs)}
        print(name, results[name], file=sys.stderr)
    out = {"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/ort_fusion.py "
                      + " ".join(sys.argv[1:]),
           "embedder": base.id, "chunks": len(texts), "threads": 2, "fusions": fusions, "results": results,
           "load_average": os.getloadavg(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "lscpu": machine()}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "lscpu"}, indent=2))


if __name__ == "__main__":
    main()
