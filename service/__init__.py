"""The torch-codemod GitHub App: webhook -> job -> engine and verification -> one pull request.

Reads in one direction: ``settings`` (environment, once), ``events`` (signature check and typed
events, no I/O), ``triggers`` (event -> job or a reason to ignore: pure), ``app`` (FastAPI:
verify, decide, enqueue, answer), ``store`` and ``queue``, ``checkout`` (git with the token out of
band), ``proposal`` (outcome -> branch, commit, PR text, annotations: pure), ``github`` (the only
module that imports PyGithub), ``worker`` (one job, start to end).
"""
