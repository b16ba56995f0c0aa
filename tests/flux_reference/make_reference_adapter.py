#!/usr/bin/env python3
"""Writes tests/data/flux/arcflow-adapter/: an ArcFlow adapter folder for the tiny dev FLUX model
(tests/data/flux/dev) in the layout of the reference implementation, pnotp/ArcFlow, as its
export_arcflow_to_diffusers.py writes it and lakonlab/pipelines/arcflow_loader.py reads it:

  config.json: the transformer's config.json keys (no patch_size), "_class_name":
    "ArcFluxTransformer2DModel", "num_gaussians" K, "logweights_channels" 4, json.dumps(indent=2,
    sort_keys=True) + newline
  diffusion_pytorch_model.safetensors: F16 tensors (their EMA checkpoints are saved in fp16), metadata
    {"policy_config": "{\\"type\\": \\"ArcFlow\\"}"} only; LoRA keys "<module>.lora_A.weight" (r, in) and
    ".lora_B.weight" (out, r) for the reference's target modules, no ".default", no prefix; heads
    proj_out_means (K*C4, D), proj_out_logweights (K*4, D), proj_out_loggamma ((K-1)*4, D) and
    norm_out.linear (2D, D), each with a bias.

Plain Python (no torch): random values from random.Random(SEED), written with struct's half format.
Regenerate: python3 tests/flux_reference/make_reference_adapter.py (from the repository root).
"""
import json
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(__file__), "..", "data", "flux")
OUT = os.path.join(ROOT, "arcflow-adapter")
K, RANK, SEED = 3, 2, 20261129


def main():
    cfg = json.load(open(os.path.join(ROOT, "dev", "transformer", "config.json")))
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    M = 4 * D
    C4 = cfg["in_channels"]  # values per packed token (4 latent pixels x channels)
    rng = random.Random(SEED)
    tensors = {}

    def mat(name, rows, cols, scale):
        tensors[name] = ([rows, cols], [rng.gauss(0.0, scale) for _ in range(rows * cols)])

    def vec(name, n, scale):
        tensors[name] = ([n], [rng.gauss(0.0, scale) for _ in range(n)])

    lora = []  # (module, in, out), the reference's targets on this config
    for i in range(cfg["num_layers"]):
        for ff in ("ff", "ff_context"):
            lora += [(f"transformer_blocks.{i}.{ff}.net.0.proj", D, M), (f"transformer_blocks.{i}.{ff}.net.2", M, D)]
    for j in range(cfg["num_single_layers"]):
        lora += [(f"single_transformer_blocks.{j}.proj_mlp", D, M), (f"single_transformer_blocks.{j}.proj_out", D + M, D)]
    lora += [("time_text_embed.timestep_embedder.linear_1", 256, D), ("time_text_embed.timestep_embedder.linear_2", D, D)]
    for module, fan_in, fan_out in lora:
        mat(module + ".lora_A.weight", RANK, fan_in, 0.3)
        mat(module + ".lora_B.weight", fan_out, RANK, 0.3)
    mat("proj_out_means.weight", K * C4, D, 0.2)
    vec("proj_out_means.bias", K * C4, 0.2)
    mat("proj_out_logweights.weight", K * 4, D, 0.2)
    vec("proj_out_logweights.bias", K * 4, 0.5)
    mat("proj_out_loggamma.weight", (K - 1) * 4, D, 0.1)
    vec("proj_out_loggamma.bias", (K - 1) * 4, 0.5)
    mat("norm_out.linear.weight", 2 * D, D, 0.2)
    vec("norm_out.linear.bias", 2 * D, 0.2)

    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = struct.pack("<%de" % len(values), *values)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"policy_config": json.dumps({"type": "ArcFlow"})}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "diffusion_pytorch_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    out_cfg = {k: v for k, v in cfg.items() if k not in ("_diffusers_version", "patch_size")}
    out_cfg.update({"_class_name": "ArcFluxTransformer2DModel", "_diffusers_version": "0.32.2",
                    "num_gaussians": K, "logweights_channels": 4, "out_channels": None})
    with open(os.path.join(OUT, "config.json"), "w") as f:
        f.write(json.dumps(out_cfg, indent=2, sort_keys=True) + "\n")
    print("wrote", OUT, len(tensors), "tensors")


if __name__ == "__main__":
    main()
