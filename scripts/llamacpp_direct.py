#!/usr/bin/env python3
"""Times llama.cpp's batch-1 greedy decoding of a GGUF by calling its C library directly.

A reference for measuring only. node-llama-cpp's JavaScript binding costs about 1 ms per token,
which is the whole token of a tiny model (stories15M, stories260K); this script calls the same
prebuilt libraries through ctypes instead, so a token costs what llama.cpp's decode and greedy
sampler cost (a few microseconds of Python per token on top).

    python3 scripts/llamacpp_direct.py LIBDIR MODEL.gguf THREADS [TOKENS] [RUNS]

LIBDIR holds libllama*.so and libggml*.so: node-llama-cpp's prebuilt CPU build is
$LLAMACPP_DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64. From the model's
beginning-of-sequence token, TOKENS (default 128) greedy tokens are drawn; the first (the
one-token prompt's evaluation) is not timed, and neither is half a second of the same decoding
before it (warm-up). RUNS (default 1) repeats the timed part on a cleared cache.
Prints "decode N tok/s over M" per run, then the last run's ids.

Only functions whose arguments are plain values are called: the parameter structs are taken from
llama.cpp's own *_default_params() and passed back untouched (as opaque bytes larger than any
version's struct), so no struct layout of a particular llama.cpp version is written here except
`llama_batch`, which has kept its seven fields since 2023.
"""
import ctypes as C
import glob
import os
import sys
import time


class Opaque(C.Structure):
    """A parameter struct received from *_default_params() and passed back by value."""

    _fields_ = [("bytes", C.c_uint8 * 1024)]


class Batch(C.Structure):
    _fields_ = [
        ("n_tokens", C.c_int32),
        ("token", C.POINTER(C.c_int32)),
        ("embd", C.POINTER(C.c_float)),
        ("pos", C.POINTER(C.c_int32)),
        ("n_seq_id", C.POINTER(C.c_int32)),
        ("seq_id", C.POINTER(C.POINTER(C.c_int32))),
        ("logits", C.POINTER(C.c_int8)),
    ]


def library(libdir, pattern):
    found = sorted(glob.glob(os.path.join(libdir, pattern)))
    if not found:
        sys.exit(f"no {pattern} in {libdir}")
    return found[0]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    libdir, model_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if threads < 1 or tokens < 2 or runs < 1:
        sys.exit("THREADS and RUNS must be at least 1, TOKENS at least 2")
    if not os.path.isfile(model_path):
        sys.exit(f"no such file: {model_path}")

    # ggml's CPU variants (AVX2, AVX-512, ...) are plug-ins that it picks at run time.
    ggml = C.CDLL(library(libdir, "libggml.*so*"), mode=C.RTLD_GLOBAL)
    ggml.ggml_backend_load_all_from_path.argtypes = [C.c_char_p]
    ggml.ggml_backend_load_all_from_path(libdir.encode())
    llama = C.CDLL(library(libdir, "libllama.*so*"), mode=C.RTLD_GLOBAL)

    llama.llama_backend_init()
    llama.llama_model_default_params.restype = Opaque
    llama.llama_model_load_from_file.argtypes = [C.c_char_p, Opaque]
    llama.llama_model_load_from_file.restype = C.c_void_p
    llama.llama_context_default_params.restype = Opaque
    llama.llama_init_from_model.argtypes = [C.c_void_p, Opaque]
    llama.llama_init_from_model.restype = C.c_void_p
    llama.llama_set_n_threads.argtypes = [C.c_void_p, C.c_int32, C.c_int32]
    llama.llama_model_get_vocab.argtypes = [C.c_void_p]
    llama.llama_model_get_vocab.restype = C.c_void_p
    llama.llama_vocab_bos.argtypes = [C.c_void_p]
    llama.llama_vocab_bos.restype = C.c_int32
    llama.llama_batch_get_one.argtypes = [C.POINTER(C.c_int32), C.c_int32]
    llama.llama_batch_get_one.restype = Batch
    llama.llama_decode.argtypes = [C.c_void_p, Batch]
    llama.llama_decode.restype = C.c_int32
    llama.llama_sampler_init_greedy.restype = C.c_void_p
    llama.llama_sampler_sample.argtypes = [C.c_void_p, C.c_void_p, C.c_int32]
    llama.llama_sampler_sample.restype = C.c_int32
    llama.llama_get_memory.argtypes = [C.c_void_p]
    llama.llama_get_memory.restype = C.c_void_p
    llama.llama_memory_clear.argtypes = [C.c_void_p, C.c_bool]

    model = llama.llama_model_load_from_file(model_path.encode(), llama.llama_model_default_params())
    if not model:
        sys.exit(f"llama.cpp could not load {model_path}")
    ctx = llama.llama_init_from_model(model, llama.llama_context_default_params())
    if not ctx:
        sys.exit("llama.cpp could not make a context")
    llama.llama_set_n_threads(ctx, threads, threads)
    greedy = llama.llama_sampler_init_greedy()
    bos = llama.llama_vocab_bos(llama.llama_model_get_vocab(model))
    def greedy_run(n):
        """n greedy tokens from the beginning of a cleared cache; seconds of all but the first."""
        llama.llama_memory_clear(llama.llama_get_memory(ctx), True)
        token = (C.c_int32 * 1)(bos)
        ids, start = [], None
        for step in range(n):
            if step == 1:
                start = time.perf_counter()
            if llama.llama_decode(ctx, llama.llama_batch_get_one(token, 1)) != 0:
                sys.exit(f"llama_decode failed at step {step}")
            token[0] = llama.llama_sampler_sample(greedy, ctx, -1)
            ids.append(token[0])
        return ids, time.perf_counter() - start

    # Untimed decoding first, as `jielong bench` does: the cores run slower for the first few
    # hundred milliseconds of work after being idle.
    started = time.perf_counter()
    while time.perf_counter() - started < 0.5:
        greedy_run(min(tokens, 32))
    for _ in range(runs):
        ids, elapsed = greedy_run(tokens)
        print(f"decode {(tokens - 1) / elapsed:.1f} tok/s over {tokens - 1}")
    print("ids", ids)


if __name__ == "__main__":
    main()
