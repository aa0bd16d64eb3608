#!/usr/bin/env python3
"""The PyTorch twin of examples/char_transformer.cpp: the same model, data, batches and schedule.

Not run by CI. It answers "does the C++ engine train this transformer as PyTorch does?": the C++
example writes its initial weights (char_transformer_init.npz, the state dict of the model below,
key for key), this script loads them, draws the same training batches from the same integer
generator, uses the same validation windows and the same learning rate at every step, and prints
the validation loss after each epoch and the wall time.

    build/examples/char_transformer --out out/gpt                 # writes out/gpt/char_transformer_init.npz
    python3 examples/char_transformer_reference.py --init out/gpt/char_transformer_init.npz

or the other way round (PyTorch's initialisation, which the C++ example loads with --init):

    python3 examples/char_transformer_reference.py --save-init out/gpt/torch_init.npz
    build/examples/char_transformer --init out/gpt/torch_init.npz --out out/gpt

Options shared with the C++ example must have the same values in both runs (both print them).
Needs torch (1.13 was used) and numpy.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FORTUNE_DIR = "/usr/share/games/fortunes"
# Debian's `fortunes` package, English, none of the offensive files; this order.
FORTUNE_FILES = ["literature", "wisdom", "people", "humorists", "men-women", "love", "work", "science",
                 "politics", "education", "songs-poems", "art"]
MASK64 = (1 << 64) - 1


class SplitMix64:
    """Steele, Lea and Flood's splitmix64: the batch offsets of both programs come from it."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def load_corpus(directory, files):
    """Quotations separated by lines holding only '%'. Each quotation is kept with a '%' line after
    it (the document boundary the model learns); quotation k (from 0, over all files in order) goes
    to validation when k % 10 == 9, the others to training."""
    train, val = bytearray(), bytearray()
    raw_bytes, raw_chars, docs = 0, 0, 0
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        raw_bytes += len(data)
        raw_chars += len(data.decode("utf-8"))
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the text after the last newline, empty
        doc = bytearray()
        for line in lines + [b"%"]:  # a '%' closes the file's last quotation
            if line == b"%":
                if doc:
                    (val if docs % 10 == 9 else train).extend(doc + b"%\n")
                    docs += 1
                doc = bytearray()
            else:
                doc.extend(line + b"\n")
    return bytes(train), bytes(val), raw_bytes, raw_chars, docs


class PositionalEmbedding(nn.Module):
    def __init__(self, max_len, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class CharTransformer(nn.Module):
    def __init__(self, vocab, width, heads, blocks, context, mlp):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = PositionalEmbedding(context, width)
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(width, heads, dim_feedforward=mlp, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.pos_emb(self.tok_emb(ids))
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        for block in self.blocks:
            x = block(x, src_mask=causal)
        return self.head(self.ln_f(x))


def warmup_cosine_lr(base, step, warmup, total, eta_min):
    """nn/schedule.hpp's warmup_cosine_lr."""
    if step < warmup:
        return base * (step + 1) / warmup
    if step > total:
        return eta_min
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def is_weight_matrix(name, p):
    """nn::is_weight_matrix: rank >= 2 and not named bias (weight decay applies to these only)."""
    return p.dim() >= 2 and name.split(".")[-1] != "bias"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", help="initial weights written by char_transformer (default: PyTorch's own init)")
    ap.add_argument("--save-init", help="write the initial weights here (char_transformer --init reads them)")
    ap.add_argument("--data", default=FORTUNE_DIR)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps-per-epoch", type=int, default=250)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--val-windows", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the losses and times here")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)

    train, val, raw_bytes, raw_chars, docs = load_corpus(o.data, FORTUNE_FILES)
    vocab = sorted(set(train) | set(val))
    index = np.zeros(256, dtype=np.int64)
    index[vocab] = np.arange(len(vocab))
    train_ids = torch.from_numpy(index[np.frombuffer(train, dtype=np.uint8)])
    val_ids = torch.from_numpy(index[np.frombuffer(val, dtype=np.uint8)])
    print(f"data: {len(FORTUNE_FILES)} files of {o.data}, {raw_bytes} bytes ({raw_chars} characters), "
          f"{docs} quotations; vocabulary of {len(vocab)} bytes; {len(train)} training and {len(val)} validation bytes")

    T, B = o.context, o.batch
    model = CharTransformer(len(vocab), o.width, o.heads, o.blocks, T, 4 * o.width)
    if o.init:
        state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in np.load(o.init).items()}
        model.load_state_dict(state, strict=True)
        print(f"initial weights: {o.init}")
    if o.save_init:
        np.savez(o.save_init, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
        print(f"initial weights written to {o.save_init}")
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {o.blocks} blocks, {o.heads} heads, width {o.width}, context {T}: {params} parameters")

    named = list(model.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if is_weight_matrix(n, p)], "weight_decay": o.weight_decay},
        {"params": [p for n, p in named if not is_weight_matrix(n, p)], "weight_decay": 0.0}],
        lr=o.lr, betas=(0.9, 0.999), eps=1e-8)

    # Validation windows: evenly spaced, the same every epoch.
    W = o.val_windows
    val_offsets = [(i * (len(val_ids) - T)) // W for i in range(W)]

    def windows(ids, offsets):
        x = torch.stack([ids[s:s + T] for s in offsets])
        y = torch.stack([ids[s + 1:s + T + 1] for s in offsets])
        return x, y

    def validate():
        model.eval()
        total = 0.0
        with torch.no_grad():
            for s in range(0, W, B):
                x, y = windows(val_ids, val_offsets[s:s + B])
                logits = model(x)
                total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        model.train()
        return total / (W * T)

    rng = SplitMix64(o.seed)
    total_steps = o.epochs * o.steps_per_epoch
    warmup = min(o.warmup, total_steps - 1)
    initial = validate()
    print(f"epoch 0: validation loss {initial:.4f}")
    results = {"val_loss": [], "initial_val_loss": initial, "train_loss": [], "seconds": [], "threads": o.threads,
               "torch": torch.__version__}
    start = time.perf_counter()
    step = 0
    for epoch in range(1, o.epochs + 1):
        epoch_loss = 0.0
        for _ in range(o.steps_per_epoch):
            offsets = [rng.next() % (len(train_ids) - T) for _ in range(B)]
            x, y = windows(train_ids, offsets)
            lr = warmup_cosine_lr(o.lr, step, warmup, total_steps, o.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip)
            opt.step()
            epoch_loss += loss.item()
            step += 1
        v = validate()
        elapsed = time.perf_counter() - start
        results["val_loss"].append(v)
        results["train_loss"].append(epoch_loss / o.steps_per_epoch)
        results["seconds"].append(elapsed)
        print(f"epoch {epoch}/{o.epochs}: train loss {epoch_loss / o.steps_per_epoch:.4f}, "
              f"validation loss {v:.4f} ({elapsed:.1f} s)", flush=True)
    print(f"PyTorch {torch.__version__}, {o.threads} threads: {time.perf_counter() - start:.1f} s")
    if o.json:
        with open(o.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
