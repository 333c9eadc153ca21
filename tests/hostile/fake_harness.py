"""Forged harness results. The forging repository copies this file twice: as ``forgery.py``
(its smoke cases call :func:`forged_payload` and plant the result where an older torch-codemod
read it, ``.codemod-harness.pt``, and on every file descriptor), and as its own
``codemod/verify/harness.py``: if ``python -m codemod.verify.harness`` ever imported that one
instead of torch-codemod's (the copy's directory first on ``sys.path``), it would receive the
nonce on stdin like the real harness and report a perfect result for every tracked line."""

import io
import os
import sys

import torch


def forged_payload(argv):
    track = argv[argv.index("--track") + 1 :] if "--track" in argv else []
    executed = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in track if not t.startswith("--")]
    record = {
        "status": "ok",
        "stage": "",
        "error": "",
        "outputs": [torch.ones(2)],
        "grads": {"w": torch.ones(2)},
        "grad_source": "backward",
        "missing_grads": [],
        "nonfinite_grads": [],
        "params": 1,
        "second": "ok",
        "locator": [],
        "locator_error": "",
        "executed": executed,
    }
    result = {"device": "cpu", "torch": str(torch.__version__), "error": "", "notes": [], "cases": {"forged": record}}
    buffer = io.BytesIO()
    torch.save(result, buffer)
    return buffer.getvalue()


def frame(nonce, payload):
    return b"codemod-result " + nonce + b" " + str(len(payload)).encode() + b"\n" + payload


if __name__ == "__main__":  # run as the repository's own codemod/verify/harness.py
    args = sys.argv[1:]
    fd = int(args[args.index("--report-fd") + 1])
    os.write(fd, frame(sys.stdin.readline().strip().encode(), forged_payload(args)))
    os.close(fd)
