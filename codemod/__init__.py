"""torch-codemod: find and fix PyTorch autograd bugs with LibCST codemods, proven by running code."""

__version__ = "0.1.0"
