#!/usr/bin/env python3
"""Parity of embedperf-candle's multimodal towers against transformers, on tiny seeded models.

Builds tiny random CLIP (CLIPModel) and SigLIP (SiglipModel) models with
transformers (hidden 32, 2 layers, 2 heads, intermediate 64; CLIP projection_dim
16), keeping the real input shapes: image 224 with 16-pixel patches, CLIP text
77 positions / vocab 49408, SigLIP text 64 positions / vocab 32000. Weights are
re-drawn with a larger spread than transformers' init (and random layer-norm
weights) so that attention patterns, positions and pooling positions matter.
Each model is saved with save_pretrained as a `reference` artifact (plus
embedperf_model.json); the candle runner runs every tower (clip text, clip
image, siglip text, siglip image) through the protocol for B=1 and B=3, and its
`sentence_embedding` is compared with transformers'
`get_text_features(...)/get_image_features(...).pooler_output`, L2-normalised:

  min cosine >= 0.9999 and max abs <= 1e-4, every tower and batch size.

Inputs: CLIP text [49406, random ids in 1..49405, 49407, then pad 49407] with
its attention mask; SigLIP text [random ids in 2..31999, 1 (eos), then pad 1] to
64 with an all-ones mask; images: random normal pixel_values [B,3,224,224].

With --real-configs DIR (e.g. /work/shared/models), also full-size models with
random weights built from the shipped config.json of openai/clip-vit-base-patch16
and google/siglip-base-patch16-224; the artifact keeps the hub's config.json as
shipped (legacy vision_config_dict, eos_token_id 2; SigLIP's five keys), so the
runner's config parsing is checked against transformers' on the real files (B=1).

Also run: CLIP text with the hub's legacy `eos_token_id: 2` in config.json
(transformers then pools at argmax(input_ids), the runner at the first 49407),
and, to show the test can see the pooling, how far the reference would be if it
pooled at another position.

Usage: python multimodal_parity.py [--bin PATH/TO/embedperf-candle]
       [--work /tmp/embedperf-candle-mm-parity] [--threads 2] [--real-configs DIR]
       [--precision fp32|bf16|fp16|int8 --min-cosine X]
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/embedperf/cargo-target"))
DEFAULT_BIN = os.path.join(TARGET, "release", "embedperf-candle")
BATCHES = (1, 3)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def redraw(model, seed):
    """Weights with a spread that makes attention non-uniform; norms random around 1/0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "logit" in name:
                continue
            n = torch.randn(p.shape, generator=g)
            if "norm" in name:  # layer_norm1/2, final_layer_norm, pre_layrnorm, post_layernorm, head.layernorm
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * n)
            elif name.endswith("bias"):
                p.copy_(0.05 * n)
            elif "embedding" in name or name.endswith("probe"):
                p.copy_(0.5 * n if p.dim() != 4 else 0.05 * n)  # patch conv: 768 inputs
            else:
                p.copy_(0.15 * n)


REAL = {"clip": "openai__clip-vit-base-patch16", "siglip": "google__siglip-base-patch16-224"}


def build(family, out, real_dir=None):
    import transformers as T

    torch.manual_seed({"clip": 11, "siglip": 12}[family])
    if real_dir is not None:
        # full size, transformers' own init plus random norms; the hub config.json kept verbatim
        src = os.path.join(real_dir, REAL[family], "config.json")
        cls = T.CLIPModel if family == "clip" else T.SiglipModel
        model = cls(cls.config_class.from_pretrained(os.path.dirname(src)))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(0.2 * torch.randn_like(p))
        model.eval()
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out)
        shutil.copyfile(src, os.path.join(out, "config.json"))
        with open(os.path.join(out, "embedperf_model.json"), "w") as f:
            json.dump({"family": family, "pooling": "tower", "normalize": True, "dense": []}, f)
        return
    if family == "clip":
        cfg = T.CLIPConfig(
            text_config=dict(TINY, vocab_size=49408, max_position_embeddings=77),
            vision_config=dict(TINY, image_size=224, patch_size=16),
            projection_dim=16,
        )
        model = T.CLIPModel(cfg)
    else:
        cfg = T.SiglipConfig(
            text_config=dict(TINY, vocab_size=32000, max_position_embeddings=64),
            vision_config=dict(TINY, image_size=224, patch_size=16),
        )
        model = T.SiglipModel(cfg)
    redraw(model, {"clip": 21, "siglip": 22}[family])
    model.eval()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    with open(os.path.join(out, "embedperf_model.json"), "w") as f:
        json.dump({"family": family, "pooling": "tower", "normalize": True, "dense": []}, f)


def text_batch(family, b, rng):
    """ids, mask [b, S] as the family's tokenizer pads them."""
    if family == "clip":
        S, bos, eos, pad, lo, hi = 77, 49406, 49407, 49407, 1, 49406
        lengths = [77, 12, 5][:b] if b > 1 else [20]  # tokens incl. BOS and EOS
    else:
        S, bos, eos, pad, lo, hi = 64, None, 1, 1, 2, 32000
        lengths = [64, 23, 4][:b] if b > 1 else [17]  # tokens incl. EOS
    ids = np.full((b, S), pad, dtype=np.int64)
    mask = np.zeros((b, S), dtype=np.int64)
    for i, n in enumerate(lengths):
        body = n - 2 if bos is not None else n - 1
        row = ([bos] if bos is not None else []) + list(rng.integers(lo, hi, body)) + [eos]
        ids[i, :n] = row
        mask[i, :n] = 1
    if family == "siglip":
        mask[:] = 1  # SigLIP is fed max-length padded text; the tower takes no mask
    return ids, mask


def reference(family, path, modality, x, mask=None):
    import transformers as T

    cls = T.CLIPModel if family == "clip" else T.SiglipModel
    model = cls.from_pretrained(path, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        if modality == "image":
            out = model.get_image_features(pixel_values=torch.from_numpy(x))
        elif family == "clip":
            out = model.get_text_features(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(mask))
        else:
            out = model.get_text_features(input_ids=torch.from_numpy(x))
        pooled = out.pooler_output
        return F.normalize(pooled, p=2, dim=-1).numpy(), out.last_hidden_state, model


class Refusal(Exception):
    """The runner refused the precision for this tower (error kind unsupported)."""


def run_candle(binary, family, path, modality, inputs, work, threads, output_dim, precision="fp32"):
    """inputs: list of (name, dict of arrays); one request, one shape each."""
    shapes = []
    for name, arrays in inputs:
        wl = os.path.join(work, f"{name}.workload.safetensors")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, wl)
        x = arrays.get("pixel_values", arrays.get("input_ids"))
        seq = int(x.shape[-1])  # image: the side in pixels
        shapes.append({"batch": int(x.shape[0]), "seq": seq, "workload": wl,
                       "embeddings": os.path.join(work, f"{name}.embeddings.safetensors")})
    request = {
        "protocol": 1, "runtime": "candle",
        "model": {"name": f"tiny-{family}-{modality}", "family": family, "pooling": "tower",
                  "normalize": True, "output_dim": output_dim, "truncate_dim": None, "modality": modality},
        "artifact": {"format": "reference", "path": path},
        "shapes": shapes, "device": os.environ.get("PARITY_DEVICE", "cpu"), "precision": precision,
        "threads": {"intra_op": threads, "inter_op": 1},
        "timing": {"warmup": 1, "min_calls": 2, "min_seconds": 0.0, "max_seconds": 30.0},
    }
    req, res = os.path.join(work, "request.json"), os.path.join(work, "result.json")
    with open(req, "w") as f:
        json.dump(request, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run([binary, "--request", req, "--result", res], env=env, capture_output=True, text=True)
    result = json.load(open(res)) if os.path.exists(res) else None
    if result and (result.get("error") or {}).get("kind") == "unsupported":
        raise Refusal(result["error"]["message"])
    if result and result["settings"].get("precision") != precision:
        raise RuntimeError(f"asked {precision}, settings.precision says {result['settings'].get('precision')}")
    if p.returncode != 0 or result is None or result.get("error"):
        raise RuntimeError(f"candle runner failed ({p.returncode}): {p.stderr}\n{json.dumps(result, indent=1)}")
    for s in result["shapes"]:
        if s["status"] != "ok":
            raise RuntimeError(f"shape {s['batch']}x{s['seq']} failed: {s['error']}")
    return [load_file(s["embeddings"])["sentence_embedding"] for s in shapes], result


def cosine_rows(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


FLOOR = {"min_cosine": 0.9999, "max_abs": 1e-4}  # fp32; --precision sets the cosine floor instead


def compare(label, got, ref, device):
    cos = cosine_rows(got, ref)
    max_abs = float(np.abs(got - ref).max())
    passed = (bool(np.isfinite(got).all()) and got.shape == ref.shape and cos.min() >= FLOOR["min_cosine"]
              and max_abs <= FLOOR["max_abs"])
    print(f"{label:40s} dim={ref.shape[1]:3d} min_cos={cos.min():.8f} max_abs={max_abs:.2e} "
          f"device={device} {'PASS' if passed else 'FAIL'}")
    return passed


def real_configs(args):
    ok = True
    for family in ("clip", "siglip"):
        path = os.path.join(args.work, f"{family}-real", "model")
        build(family, path, real_dir=args.real_configs)
        for modality in ("text", "image"):
            work = os.path.join(args.work, f"{family}-real", modality)
            os.makedirs(work, exist_ok=True)
            rng = np.random.default_rng(51)
            if modality == "image":
                x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
                arrays, ref = {"pixel_values": x}, reference(family, path, modality, x)[0]
            else:
                ids, mask = text_batch(family, 3, rng)
                arrays = {"input_ids": ids, "attention_mask": mask, "lengths": mask.sum(1).astype(np.int64)}
                ref = reference(family, path, modality, ids, mask)[0]
            outs, result = run_candle(args.bin, family, path, modality, [("real", arrays)], work,
                                      args.threads, ref.shape[1])
            b = len(next(iter(arrays.values())))
            ok &= compare(f"{family} {modality} B={b} (hub config, full size)", outs[0], ref,
                          result["device"]["used"])
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--work", default="/tmp/embedperf-candle-mm-parity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real-configs", default=None, metavar="DIR",
                    help="also check full-size models built from DIR/<model>/config.json")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"],
                    help="run candle at this precision against the same fp32 reference; a tower the runner "
                         "refuses is reported as REFUSED (not a failure)")
    ap.add_argument("--min-cosine", type=float, default=0.0, help="floor for a reduced precision")
    args = ap.parse_args()
    if args.precision != "fp32":
        FLOOR.update(min_cosine=args.min_cosine, max_abs=float("inf"))
    if not os.path.exists(args.bin):
        raise SystemExit(f"no runner binary at {args.bin} (cargo build --release -p candle-runner)")
    ok = True
    for family in ("clip", "siglip"):
        path = os.path.join(args.work, family, "model")
        build(family, path)
        for modality in ("text", "image"):
            work = os.path.join(args.work, family, modality)
            os.makedirs(work, exist_ok=True)
            rng = np.random.default_rng({"clip": 31, "siglip": 32}[family] + (modality == "image"))
            inputs, refs, extra = [], [], []
            for b in BATCHES:
                if modality == "image":
                    px = rng.standard_normal((b, 3, 224, 224)).astype(np.float32)
                    inputs.append((f"b{b}", {"pixel_values": px}))
                    refs.append(reference(family, path, modality, px)[0])
                else:
                    ids, mask = text_batch(family, b, rng)
                    inputs.append((f"b{b}", {"input_ids": ids, "attention_mask": mask,
                                             "lengths": mask.sum(1).astype(np.int64)}))
                    ref, hidden, model = reference(family, path, modality, ids, mask)
                    refs.append(ref)
                    extra.append((ids, mask, hidden, model))
            try:
                outs, result = run_candle(args.bin, family, path, modality, inputs, work, args.threads,
                                          refs[0].shape[1], args.precision)
            except Refusal as e:
                print(f"{family} {modality} REFUSED {args.precision}: {e}")
                continue
            for b, got, ref in zip(BATCHES, outs, refs):
                ok &= compare(f"{family} {modality} B={b}", got, ref, result["device"]["used"])
            if modality == "text" and len(extra) > 1 and args.precision == "fp32":
                # Sensitivity: the reference pooled one position earlier (CLIP) / at the
                # last real token instead of S-1 (SigLIP) must be visibly different.
                ids, mask, hidden, model = extra[1]
                with torch.no_grad():
                    if family == "clip":
                        pos = torch.from_numpy((ids == 49407).argmax(1) - 1)
                        alt = model.text_projection(hidden[torch.arange(len(ids)), pos])
                    else:
                        pos = torch.from_numpy((ids == 1).argmax(1))
                        alt = model.text_model.head(hidden[torch.arange(len(ids)), pos])
                alt = F.normalize(alt, dim=-1).numpy()
                print(f"{'':40s} (pooling check: reference pooled at another position "
                      f"min_cos={cosine_rows(alt, refs[1]).min():.4f} vs the real one)")
        if family == "clip" and args.precision == "fp32":
            # The hub's CLIP configs say eos_token_id 2: transformers pools at
            # argmax(input_ids); the runner at the first 49407. Same rows.
            legacy = os.path.join(args.work, "clip-legacy-eos", "model")
            if os.path.exists(legacy):
                shutil.rmtree(legacy)
            shutil.copytree(path, legacy)
            cfg_path = os.path.join(legacy, "config.json")
            cfg = json.load(open(cfg_path))
            cfg["text_config"]["eos_token_id"] = 2
            json.dump(cfg, open(cfg_path, "w"), indent=2)
            work = os.path.join(args.work, "clip-legacy-eos", "text")
            os.makedirs(work, exist_ok=True)
            ids, mask = text_batch("clip", 3, np.random.default_rng(41))
            ref, _, model = reference("clip", legacy, "text", ids, mask)
            assert model.text_model.eos_token_id == 2
            outs, result = run_candle(args.bin, "clip", legacy, "text",
                                      [("b3", {"input_ids": ids, "attention_mask": mask,
                                               "lengths": mask.sum(1).astype(np.int64)})],
                                      work, args.threads, ref.shape[1])
            ok &= compare("clip text B=3 (config eos_token_id=2)", outs[0], ref, result["device"]["used"])
    if args.real_configs:
        ok &= real_configs(args)
    print("all towers PASS" if ok else "some tower FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
