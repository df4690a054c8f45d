"""GitOps promotion: gates -> canary -> analysis -> promote or roll back.

One flow (`flow.py`) drives a `Target` (`targets.py`): the local canary behind the
gateway, or a KServe InferenceService. `python -m inference_service.promotion` is the CLI
that `task promote` / `task rollback` and `.github/workflows/promote.yml` call.
"""
