"""The first N (default 1,000) MNIST test digits in MNIST's own IDX format, for measurements
that the full 10,000 make too slow (see README.md). Usage:
    python3 datasets/mnist-test-1k/make.py ../shared/data/images/mnist datasets/mnist-test-1k [N]
"""
import gzip, os, struct, sys

src, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000


def write(name, header, item_bytes):
    with gzip.open(os.path.join(src, name)) as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    body = data[header : header + n * item_bytes]
    assert count >= n and len(body) == n * item_bytes, f"{name} holds {count} items"
    tmp = os.path.join(out, name + ".tmp")
    # mtime=0 keeps the gzip bytes the same on every run.
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(struct.pack(">II", magic, n) + data[8:header] + body)
    os.replace(tmp, os.path.join(out, name))


write("t10k-images-idx3-ubyte.gz", 16, 28 * 28)
write("t10k-labels-idx1-ubyte.gz", 8, 1)
