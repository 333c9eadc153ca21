"""A repository's own ``codemod/verify/harness.py``: if ``python -m codemod.verify.harness`` ever
imported it instead of torch-codemod's (the copy's directory first on ``sys.path``), it would
receive the nonce on stdin like the real harness and report a forged, perfect result for every
tracked line. Copied to ``codemod/verify/harness.py`` in the forging repository."""

import io
import os
import sys

import torch


def main() -> None:
    args = sys.argv[1:]
    fd = int(args[args.index("--report-fd") + 1])
    track = args[args.index("--track") + 1:] if "--track" in args else []
    track = [t for t in track if not t.startswith("--")]
    nonce = sys.stdin.readline().strip()
    executed = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in track]
    record = {"status": "ok", "stage": "", "error": "", "outputs": [torch.ones(2)], "grads": {"w": torch.ones(2)},
              "grad_source": "backward", "missing_grads": [], "nonfinite_grads": [], "params": 1, "second": "ok",
              "locator": [], "locator_error": "", "executed": executed}
    result = {"device": "cpu", "torch": torch.__version__, "error": "", "notes": [], "cases": {"forged": record}}
    buffer = io.BytesIO()
    torch.save(result, buffer)
    payload = buffer.getvalue()
    os.write(fd, b"codemod-result " + nonce.encode() + b" " + str(len(payload)).encode() + b"\n" + payload)
    os.close(fd)


main()
