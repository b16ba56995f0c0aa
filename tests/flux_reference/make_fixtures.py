#!/usr/bin/env python3
"""Writes the FLUX fixtures of tests/data/flux/ (see README.md here).

An independent reference of diffusers' FluxTransformer2DModel and AutoencoderKL decoder, written in
plain torch (Debian's python3-torch 1.13; diffusers is not needed) from the formulas of diffusers'
source (transformer_flux.py, embeddings.py, normalization.py, attention_processor.py,
autoencoders/vae.py, unets/unet_2d_blocks.py, resnet.py, upsampling.py, pipeline_flux.py). It
builds tiny models with random weights in the diffusers folder layout, runs them in float32, and
writes the inputs and outputs that tests/models/flux/test_flux.cpp compares the C++ against.

Run from anywhere:  /usr/bin/python3 tests/flux_reference/make_fixtures.py
The output is deterministic (fixed seeds).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "data", "flux"))

# ----------------------------------------------------------------------------- safetensors

_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def save_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer (the safetensors package is not in Debian)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------- weights


class Weights:
    """Random weights by checkpoint key, rounded to the storage dtype, kept as float32."""

    def __init__(self, seed, store_dtype):
        self.g = torch.Generator().manual_seed(seed)
        self.store_dtype = store_dtype
        self.w = {}

    def _add(self, name, t):
        self.w[name] = t.to(self.store_dtype).to(torch.float32)

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.g)

    def linear(self, name, fan_in, fan_out, gain=1.0):
        self._add(name + ".weight", self.randn(fan_out, fan_in) * (gain / math.sqrt(fan_in)))
        self._add(name + ".bias", self.randn(fan_out) * 0.1)

    def conv(self, name, cin, cout, k):
        self._add(name + ".weight", self.randn(cout, cin, k, k) * (1.0 / math.sqrt(cin * k * k)))
        self._add(name + ".bias", self.randn(cout) * 0.1)

    def norm(self, name, dim, bias=True):
        self._add(name + ".weight", 1.0 + 0.1 * self.randn(dim))
        if bias:
            self._add(name + ".bias", 0.1 * self.randn(dim))

    def stored(self):
        return {k: v.to(self.store_dtype) for k, v in self.w.items()}


# ----------------------------------------------------------------------------- transformer


def flux_weights(cfg, seed, store_dtype):
    W = Weights(seed, store_dtype)
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    hd = cfg["attention_head_dim"]
    out_ch = cfg.get("out_channels") or cfg["in_channels"]
    W.linear("x_embedder", cfg["in_channels"], D)
    W.linear("context_embedder", cfg["joint_attention_dim"], D)
    W.linear("time_text_embed.timestep_embedder.linear_1", 256, D)
    W.linear("time_text_embed.timestep_embedder.linear_2", D, D)
    if cfg.get("guidance_embeds", False):
        W.linear("time_text_embed.guidance_embedder.linear_1", 256, D)
        W.linear("time_text_embed.guidance_embedder.linear_2", D, D)
    W.linear("time_text_embed.text_embedder.linear_1", cfg["pooled_projection_dim"], D)
    W.linear("time_text_embed.text_embedder.linear_2", D, D)
    for i in range(cfg["num_layers"]):
        b = f"transformer_blocks.{i}."
        W.linear(b + "norm1.linear", D, 6 * D, gain=0.3)
        W.linear(b + "norm1_context.linear", D, 6 * D, gain=0.3)
        for n in ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]:
            W.linear(b + "attn." + n, D, D)
        for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"]:
            W.norm(b + "attn." + n, hd, bias=False)
        for ff in ["ff", "ff_context"]:
            W.linear(b + ff + ".net.0.proj", D, 4 * D)
            W.linear(b + ff + ".net.2", 4 * D, D)
    for i in range(cfg["num_single_layers"]):
        b = f"single_transformer_blocks.{i}."
        W.linear(b + "norm.linear", D, 3 * D, gain=0.3)
        W.linear(b + "proj_mlp", D, 4 * D)
        W.linear(b + "proj_out", 5 * D, D)
        for n in ["to_q", "to_k", "to_v"]:
            W.linear(b + "attn." + n, D, D)
        for n in ["norm_q", "norm_k"]:
            W.norm(b + "attn." + n, hd, bias=False)
    W.linear("norm_out.linear", D, 2 * D, gain=0.3)
    W.linear("proj_out", D, cfg.get("patch_size", 1) ** 2 * out_ch)
    return W


def lin(W, name, x):
    return F.linear(x, W[name + ".weight"], W[name + ".bias"])


def timesteps_proj(t, dim=256):
    # get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0, scale=1)
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32)
    exponent = exponent / (half - 0)
    emb = torch.exp(exponent)
    emb = t[:, None].float() * emb[None, :]
    emb = 1 * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1)


def mlp_embed(W, name, x):  # TimestepEmbedding / PixArtAlphaTextProjection(act silu)
    return lin(W, name + ".linear_2", F.silu(lin(W, name + ".linear_1", x)))


def rope(ids, axes_dims, theta=10000):
    # FluxPosEmbed + get_1d_rotary_pos_embed(use_real=True, repeat_interleave_real=True, float64)
    pos = ids.float()
    cos_out, sin_out = [], []
    for i, d in enumerate(axes_dims):
        freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)) / 1.0
        freqs = torch.outer(pos[:, i], freqs)
        cos_out.append(freqs.cos().repeat_interleave(2, dim=1).float())
        sin_out.append(freqs.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos_out, dim=-1), torch.cat(sin_out, dim=-1)


def apply_rope(x, cos, sin):  # apply_rotary_emb(use_real_unbind_dim=-1, sequence_dim=1), x (B, S, H, d)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    x_real, x_imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    x_rotated = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos + x_rotated.float() * sin).to(x.dtype)


def rms_norm(x, weight, eps=1e-6):  # diffusers RMSNorm
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    if weight.dtype in (torch.float16, torch.bfloat16):
        x = x.to(weight.dtype)
    return x * weight


def sdpa(q, k, v):  # (B, H, S, d); torch 1.13 has no F.scaled_dot_product_attention
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    return scores.softmax(dim=-1) @ v


def layer_norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def flux_attention(W, prefix, heads, hs, ehs, cos, sin):
    """FluxAttnProcessor: returns (img, txt) for a double block, the joint output for a single block."""
    def split(t):
        return t.unflatten(-1, (heads, -1))

    q = rms_norm(split(lin(W, prefix + "to_q", hs)), W[prefix + "norm_q.weight"])
    k = rms_norm(split(lin(W, prefix + "to_k", hs)), W[prefix + "norm_k.weight"])
    v = split(lin(W, prefix + "to_v", hs))
    if ehs is not None:
        eq = rms_norm(split(lin(W, prefix + "add_q_proj", ehs)), W[prefix + "norm_added_q.weight"])
        ek = rms_norm(split(lin(W, prefix + "add_k_proj", ehs)), W[prefix + "norm_added_k.weight"])
        ev = split(lin(W, prefix + "add_v_proj", ehs))
        q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    o = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    o = o.flatten(2, 3).to(q.dtype)
    if ehs is None:
        return o
    L = ehs.shape[1]
    txt, img = o[:, :L], o[:, L:]
    return lin(W, prefix + "to_out.0", img), lin(W, prefix + "to_add_out", txt)


def ff(W, prefix, x):  # FeedForward(activation "gelu-approximate")
    return lin(W, prefix + ".net.2", F.gelu(lin(W, prefix + ".net.0.proj", x), approximate="tanh"))


def double_block(W, i, heads, hs, ehs, temb, cos, sin):
    b = f"transformer_blocks.{i}."
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = lin(W, b + "norm1.linear", F.silu(temb)).chunk(6, 1)
    c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = lin(
        W, b + "norm1_context.linear", F.silu(temb)).chunk(6, 1)
    n_hs = layer_norm(hs) * (1 + scale_msa[:, None]) + shift_msa[:, None]
    n_ehs = layer_norm(ehs) * (1 + c_scale_msa[:, None]) + c_shift_msa[:, None]
    attn_out, ctx_attn_out = flux_attention(W, b + "attn.", heads, n_hs, n_ehs, cos, sin)
    hs = hs + gate_msa.unsqueeze(1) * attn_out
    n_hs = layer_norm(hs) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
    hs = hs + gate_mlp.unsqueeze(1) * ff(W, b + "ff", n_hs)
    ehs = ehs + c_gate_msa.unsqueeze(1) * ctx_attn_out
    n_ehs = layer_norm(ehs) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
    ehs = ehs + c_gate_mlp.unsqueeze(1) * ff(W, b + "ff_context", n_ehs)
    return ehs, hs


def single_block(W, i, heads, hs, ehs, temb, cos, sin):
    b = f"single_transformer_blocks.{i}."
    L = ehs.shape[1]
    hs = torch.cat([ehs, hs], dim=1)
    residual = hs
    shift, scale, gate = lin(W, b + "norm.linear", F.silu(temb)).chunk(3, 1)
    n = layer_norm(hs) * (1 + scale[:, None]) + shift[:, None]
    mlp = F.gelu(lin(W, b + "proj_mlp", n), approximate="tanh")
    attn = flux_attention(W, b + "attn.", heads, n, None, cos, sin)
    hs = residual + gate.unsqueeze(1) * lin(W, b + "proj_out", torch.cat([attn, mlp], dim=2))
    return hs[:, :L], hs[:, L:]


def flux_forward(W, cfg, hidden_states, encoder_hidden_states, pooled, timestep, img_ids, txt_ids, guidance=None):
    """FluxTransformer2DModel.forward; returns (output, features after norm_out, temb)."""
    dtype = torch.float32
    heads = cfg["num_attention_heads"]
    hs = lin(W, "x_embedder", hidden_states)
    timestep = timestep.to(dtype) * 1000
    temb = mlp_embed(W, "time_text_embed.timestep_embedder", timesteps_proj(timestep).to(dtype))
    if guidance is not None:
        guidance = guidance.to(dtype) * 1000
        temb = temb + mlp_embed(W, "time_text_embed.guidance_embedder", timesteps_proj(guidance).to(dtype))
    temb = temb + mlp_embed(W, "time_text_embed.text_embedder", pooled)
    ehs = lin(W, "context_embedder", encoder_hidden_states)
    cos, sin = rope(torch.cat((txt_ids, img_ids), dim=0), cfg.get("axes_dims_rope", (16, 56, 56)))
    for i in range(cfg["num_layers"]):
        ehs, hs = double_block(W, i, heads, hs, ehs, temb, cos, sin)
    for i in range(cfg["num_single_layers"]):
        ehs, hs = single_block(W, i, heads, hs, ehs, temb, cos, sin)
    # AdaLayerNormContinuous: scale first, then shift
    scale, shift = torch.chunk(lin(W, "norm_out.linear", F.silu(temb).to(hs.dtype)), 2, dim=1)
    feats = layer_norm(hs) * (1 + scale)[:, None, :] + shift[:, None, :]
    return lin(W, "proj_out", feats), feats, temb


def pack_latents(latents):  # FluxPipeline._pack_latents
    b, c, h, w = latents.shape
    latents = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(b, (h // 2) * (w // 2), c * 4)


def latent_image_ids(h, w):  # FluxPipeline._prepare_latent_image_ids on the packed grid
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(h)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


# ----------------------------------------------------------------------------- VAE decoder


def vae_weights(cfg, seed, store_dtype):
    W = Weights(seed, store_dtype)
    ch = cfg["block_out_channels"]
    C, Z, n = ch[-1], cfg["latent_channels"], len(ch)

    def resnet(name, cin, cout):
        W.norm(name + ".norm1", cin)
        W.conv(name + ".conv1", cin, cout, 3)
        W.norm(name + ".norm2", cout)
        W.conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            W.conv(name + ".conv_shortcut", cin, cout, 1)

    if cfg.get("use_post_quant_conv", True):
        W.conv("post_quant_conv", Z, Z, 1)
    W.conv("decoder.conv_in", Z, C, 3)
    resnet("decoder.mid_block.resnets.0", C, C)
    W.norm("decoder.mid_block.attentions.0.group_norm", C)
    for p in ["to_q", "to_k", "to_v", "to_out.0"]:
        W.linear("decoder.mid_block.attentions.0." + p, C, C)
    resnet("decoder.mid_block.resnets.1", C, C)
    rev = list(reversed(ch))
    prev = rev[0]
    for i, out in enumerate(rev):
        for r in range(cfg["layers_per_block"] + 1):
            resnet(f"decoder.up_blocks.{i}.resnets.{r}", prev if r == 0 else out, out)
        if i < n - 1:
            W.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", out, out, 3)
        prev = out
    W.norm("decoder.conv_norm_out", ch[0])
    W.conv("decoder.conv_out", ch[0], cfg["out_channels"], 3)
    return W


def conv(W, name, x):
    k = W[name + ".weight"].shape[-1]
    return F.conv2d(x, W[name + ".weight"], W[name + ".bias"], padding=k // 2)


def gn(W, name, x, groups):
    return F.group_norm(x, groups, W[name + ".weight"], W[name + ".bias"], eps=1e-6)


def resnet_block(W, name, x, groups):  # ResnetBlock2D, temb None, output_scale_factor 1
    h = conv(W, name + ".conv1", F.silu(gn(W, name + ".norm1", x, groups)))
    h = conv(W, name + ".conv2", F.silu(gn(W, name + ".norm2", h, groups)))
    if name + ".conv_shortcut.weight" in W:
        x = conv(W, name + ".conv_shortcut", x)
    return (x + h) / 1.0


def mid_attention(W, name, x, groups):  # Attention(heads=1, dim_head=C) with AttnProcessor2_0
    residual = x
    b, c, h, w = x.shape
    hs = x.view(b, c, h * w).transpose(1, 2)
    hs = gn(W, name + ".group_norm", hs.transpose(1, 2), groups).transpose(1, 2)
    q = lin(W, name + ".to_q", hs).view(b, -1, 1, c).transpose(1, 2)
    k = lin(W, name + ".to_k", hs).view(b, -1, 1, c).transpose(1, 2)
    v = lin(W, name + ".to_v", hs).view(b, -1, 1, c).transpose(1, 2)
    hs = sdpa(q, k, v).transpose(1, 2).reshape(b, -1, c).to(q.dtype)
    hs = lin(W, name + ".to_out.0", hs)
    hs = hs.transpose(-1, -2).reshape(b, c, h, w)
    return (hs + residual) / 1.0


def vae_decode(W, cfg, latents):
    G = cfg["norm_num_groups"]
    z = latents / cfg["scaling_factor"] + cfg["shift_factor"]
    if cfg.get("use_post_quant_conv", True):
        z = conv(W, "post_quant_conv", z)
    x = conv(W, "decoder.conv_in", z)
    x = resnet_block(W, "decoder.mid_block.resnets.0", x, G)
    x = mid_attention(W, "decoder.mid_block.attentions.0", x, G)
    x = resnet_block(W, "decoder.mid_block.resnets.1", x, G)
    n = len(cfg["block_out_channels"])
    for i in range(n):
        for r in range(cfg["layers_per_block"] + 1):
            x = resnet_block(W, f"decoder.up_blocks.{i}.resnets.{r}", x, G)
        if i < n - 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = conv(W, f"decoder.up_blocks.{i}.upsamplers.0.conv", x)
    x = F.silu(gn(W, "decoder.conv_norm_out", x, G))
    return conv(W, "decoder.conv_out", x)


# ----------------------------------------------------------------------------- fixtures


def write_transformer(folder, cfg, W, shards):
    write_json(os.path.join(folder, "config.json"), cfg)
    stored = W.stored()
    if shards == 1:
        save_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"), stored)
        return
    names = sorted(stored)
    weight_map, size = {}, 0
    for s in range(shards):
        part = names[s * len(names) // shards:(s + 1) * len(names) // shards]
        fname = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(os.path.join(folder, fname), {k: stored[k] for k in part})
        for k in part:
            weight_map[k] = fname
            size += stored[k].numel() * stored[k].element_size()
    write_json(os.path.join(folder, "diffusion_pytorch_model.safetensors.index.json"),
               {"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))})


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    cases = {}

    # "dev": guidance embedding, 2 double + 2 single blocks, RoPE axes (4, 6, 6), two shards, BF16
    # weights. config.json leaves out out_channels and patch_size (class defaults apply).
    dev = {"_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0",
           "attention_head_dim": 16, "axes_dims_rope": [4, 6, 6], "guidance_embeds": True, "in_channels": 16,
           "joint_attention_dim": 32, "num_attention_heads": 2, "num_layers": 2, "num_single_layers": 2,
           "pooled_projection_dim": 16}
    Wd = flux_weights(dev, seed=1, store_dtype=torch.bfloat16)
    write_transformer(os.path.join(OUT, "dev", "transformer"), dev, Wd, shards=2)
    B, L = 2, 5
    lat = torch.randn(B, 4, 8, 6, generator=g)  # latent H=8, W=6 -> a 4 x 3 token grid
    hs = pack_latents(lat)
    img_ids = latent_image_ids(4, 3)
    txt_ids = torch.zeros(L, 3)
    ehs = torch.randn(B, L, 32, generator=g)
    pooled = torch.randn(B, 16, generator=g)
    sigma = torch.tensor([0.3, 0.85])
    guidance = torch.tensor([3.5, 1.0])
    with torch.no_grad():
        out, feats, temb = flux_forward(Wd.w, dev, hs, ehs, pooled, sigma, img_ids, txt_ids, guidance)
        cos, sin = rope(torch.cat((txt_ids, img_ids), 0), dev["axes_dims_rope"])
    cases.update({"dev.latents": lat, "dev.hidden_states": hs, "dev.img_ids": img_ids, "dev.txt_ids": txt_ids,
                  "dev.encoder_hidden_states": ehs, "dev.pooled": pooled, "dev.sigma": sigma,
                  "dev.guidance": guidance, "dev.velocity": out, "dev.features": feats, "dev.temb": temb,
                  "dev.rope_cos": cos, "dev.rope_sin": sin,
                  "dev.velocity_unpacked": out.reshape(B, 4, 3, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, 4, 8, 6)})

    # "schnell": no guidance embedding, in_channels 64, explicit out_channels null, one file, F16.
    schnell = {"_class_name": "FluxTransformer2DModel", "attention_head_dim": 16, "axes_dims_rope": [4, 6, 6],
               "guidance_embeds": False, "in_channels": 64, "out_channels": None, "joint_attention_dim": 32,
               "num_attention_heads": 2, "num_layers": 1, "num_single_layers": 1, "patch_size": 1,
               "pooled_projection_dim": 16}
    Ws = flux_weights(schnell, seed=2, store_dtype=torch.float16)
    write_transformer(os.path.join(OUT, "schnell", "transformer"), schnell, Ws, shards=1)
    lat = torch.randn(1, 16, 6, 8, generator=g)  # 3 x 4 token grid
    hs = pack_latents(lat)
    img_ids = latent_image_ids(3, 4)
    L = 4
    txt_ids = torch.zeros(L, 3)
    ehs = torch.randn(1, L, 32, generator=g)
    pooled = torch.randn(1, 16, generator=g)
    sigma = torch.tensor([0.6])
    with torch.no_grad():
        out, _, _ = flux_forward(Ws.w, schnell, hs, ehs, pooled, sigma, img_ids, txt_ids, None)
    cases.update({"schnell.latents": lat, "schnell.hidden_states": hs, "schnell.img_ids": img_ids,
                  "schnell.txt_ids": txt_ids, "schnell.encoder_hidden_states": ehs, "schnell.pooled": pooled,
                  "schnell.sigma": sigma, "schnell.velocity": out})

    # VAE: 3 levels (downscale 4, not 8), a conv_shortcut in the last up block, F16 weights; the
    # file also holds a few encoder tensors, which the decoder ignores.
    vae = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0.dev0", "act_fn": "silu",
           "block_out_channels": [8, 16, 16],
           "down_block_types": ["DownEncoderBlock2D"] * 3, "force_upcast": True, "in_channels": 3,
           "latent_channels": 4, "latents_mean": None, "latents_std": None, "layers_per_block": 1,
           "mid_block_add_attention": True, "norm_num_groups": 4, "out_channels": 3, "sample_size": 32,
           "scaling_factor": 0.3611, "shift_factor": 0.1159, "up_block_types": ["UpDecoderBlock2D"] * 3,
           "use_post_quant_conv": False, "use_quant_conv": False}
    Wv = vae_weights(vae, seed=3, store_dtype=torch.float16)
    folder = os.path.join(OUT, "dev", "vae")
    write_json(os.path.join(folder, "config.json"), vae)
    stored = Wv.stored()
    stored["encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    stored["encoder.conv_in.bias"] = torch.randn(8, generator=g)
    stored["encoder.conv_out.weight"] = torch.randn(8, 8, 3, 3, generator=g)
    save_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"), stored)
    lat = torch.randn(2, 4, 5, 6, generator=g)
    with torch.no_grad():
        img = vae_decode(Wv.w, vae, lat)
    cases.update({"vae.latents": lat, "vae.images": img})

    save_safetensors(os.path.join(OUT, "cases.safetensors"), {k: v.float() for k, v in cases.items()},
                     {"generator": "tests/flux_reference/make_fixtures.py", "torch": torch.__version__})

    # A prompt-embeddings file as scripts/encode_prompts.py writes one (random values, dev widths).
    prompts = ["a red fox in the snow", "a lighthouse at dusk, oil painting", "\u00e9t\u00e9 \u2014 unicode"]
    save_safetensors(os.path.join(OUT, "prompts.safetensors"),
                     {"prompt_embeds": torch.randn(3, 7, 32, generator=g).to(torch.bfloat16),
                      "pooled_prompt_embeds": torch.randn(3, 16, generator=g).to(torch.bfloat16)},
                     {"prompts": json.dumps(prompts)})
    for k in ["dev.velocity", "schnell.velocity", "vae.images"]:
        print(f"{k}: shape {tuple(cases[k].shape)}, max |value| {cases[k].abs().max().item():.3f}")


if __name__ == "__main__":
    main()
