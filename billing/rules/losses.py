"""Transformer balance: the balance meter at the transformer against the sum of its subscribers' meters
over a period gives the losses (technical and theft). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LossResult:
    supplied_wh: int  # the transformer's balance meter
    billed_wh: int  # sum of the subscribers' meters
    loss_wh: int
    loss_bp: int  # basis points of the supplied energy (1234 = 12.34 %), rounded half up; 0 when nothing supplied
    alarm: bool

    @property
    def loss_percent_text(self) -> str:
        sign = "-" if self.loss_bp < 0 else ""
        return f"{sign}{abs(self.loss_bp) // 100}.{abs(self.loss_bp) % 100:02d} %"


def transformer_loss(supplied_wh: int, billed_wh: int, threshold_percent: int) -> LossResult:
    """A negative loss (subscribers above the balance meter) means a wrong meter or a wrong assignment
    and raises the alarm too."""
    loss = supplied_wh - billed_wh
    if supplied_wh <= 0:
        return LossResult(supplied_wh, billed_wh, loss, 0, billed_wh > 0)
    numerator = loss * 10000
    bp = (abs(numerator) + supplied_wh // 2) // supplied_wh
    bp = bp if numerator >= 0 else -bp
    return LossResult(supplied_wh, billed_wh, loss, bp, bp > threshold_percent * 100 or loss < 0)
