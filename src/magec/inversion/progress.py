"""A terminal progress bar for ``invert``, as a step callback (the CLI's; any other callback works too)."""

from __future__ import annotations

from tqdm.auto import tqdm

from magec.inversion.optimizer import StepInfo


class ProgressBar:
    """``invert(..., callback=ProgressBar("invert"))``: a tqdm bar over the schedule's steps.

    The mean loss is shown every ``every`` steps; reading it is the only device sync this adds.
    """

    def __init__(self, desc: str = "invert", every: int = 10, leave: bool = False) -> None:
        self.desc, self.every, self.leave = desc, every, leave
        self._bar: tqdm | None = None

    def __call__(self, info: StepInfo) -> None:
        if self._bar is None:
            self._bar = tqdm(total=info.total_steps, desc=self.desc, leave=self.leave)
        if (info.step + 1) % self.every == 0:
            self._bar.set_postfix(loss=f"{info.losses['total'].nanmean().item():.4f}", refresh=False)
        self._bar.update(info.step + 1 - self._bar.n)  # tqdm redraws at most every 0.1 s
        if info.step + 1 >= info.total_steps:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
