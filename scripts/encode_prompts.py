#!/usr/bin/env python3
"""Encodes prompts for arcflow's FLUX teacher (ARCFLOW.md section 7), optional.

Writes a safetensors file with
  prompt_embeds         (N, L, 4096)  T5-XXL output, L = --max-sequence-length (FluxPipeline pads to it)
  pooled_prompt_embeds  (N, 768)      CLIP-L pooled output
and the prompts, as a JSON list, in the metadata entry "prompts": the file that
arcflow::load_flux_prompt_embeddings (include/arcflow/models/flux/flux_loader.h) reads. The C++ never
needs Python: this is for people who have diffusers (pip install diffusers transformers
sentencepiece safetensors torch) and the FLUX.1 text encoders.

  scripts/encode_prompts.py --model black-forest-labs/FLUX.1-dev --prompts prompts.txt -o prompts.safetensors

--prompts: a text file, one prompt per line (empty lines skipped); or give prompts with --prompt.
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="diffusers FLUX model folder or Hub id (text encoders are loaded)")
    ap.add_argument("--prompts", help="text file with one prompt per line")
    ap.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--max-sequence-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    ap.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    args = ap.parse_args()

    import torch
    from diffusers import FluxPipeline
    from safetensors.torch import save_file

    prompts = list(args.prompt)
    if args.prompts:
        with open(args.prompts, encoding="utf-8") as f:
            prompts += [line.strip() for line in f if line.strip()]
    if not prompts:
        sys.exit("encode_prompts.py: no prompts (--prompts FILE or --prompt TEXT)")

    dtype = getattr(torch, args.dtype)
    # Only the text encoders and tokenizers: no transformer, no VAE.
    pipe = FluxPipeline.from_pretrained(args.model, transformer=None, vae=None, torch_dtype=dtype).to(args.device)
    embeds, pooled = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), args.batch_size):
            batch = prompts[i:i + args.batch_size]
            pe, pp, _ = pipe.encode_prompt(prompt=batch, prompt_2=None, device=args.device,
                                           max_sequence_length=args.max_sequence_length)
            embeds.append(pe.to(dtype).cpu())
            pooled.append(pp.to(dtype).cpu())
            print(f"encoded {min(i + args.batch_size, len(prompts))}/{len(prompts)}", file=sys.stderr)
    tensors = {"prompt_embeds": torch.cat(embeds).contiguous(), "pooled_prompt_embeds": torch.cat(pooled).contiguous()}
    tmp = args.output + ".tmp"
    save_file(tensors, tmp, metadata={"prompts": json.dumps(prompts, ensure_ascii=False)})
    os.replace(tmp, args.output)  # atomic
    print(f"{args.output}: prompt_embeds {tuple(tensors['prompt_embeds'].shape)}, "
          f"pooled_prompt_embeds {tuple(tensors['pooled_prompt_embeds'].shape)}", file=sys.stderr)


if __name__ == "__main__":
    main()
