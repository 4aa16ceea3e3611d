"""The built-in workflow that runs evaluations (registered as ``mixtrain-eval`` on first use).

An eval runs through the ordinary workflow engine — supervisor, worker, run log, cancel, timeout,
SIGKILL detection — instead of a second job system. All it carries is the eval's name: what to
evaluate is in the eval record, written and validated by `mixtrain eval create` before the run starts.
"""

from mixtrain.workflows.flow import MixFlow


class MixtrainEval(MixFlow):
    def run(self, eval_name: str) -> dict:
        """Score the eval's models on its dataset and store the results."""
        from mixtrain.evals.job import run_eval

        return run_eval(eval_name)
