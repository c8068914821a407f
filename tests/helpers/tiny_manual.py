"""Tiny manual-optimization modules: a GAN-style pair of optimizers, and one optimizer stepped by hand."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

G_LR = 0.01
D_LRS = (0.02, 0.005)


class TinyGAN(pl.LightningModule):
    """A generator and a discriminator, each with its own Adam, each stepping once per batch.

    The discriminator's optimizer has two named param groups (``weight``, ``bias``). The "noise" is the
    batch itself rolled by one row, so that no global random state is drawn (a resumed run is then
    bitwise comparable). Returns the sum of both losses, which SpikeAdaptiveLR may read.
    """

    def __init__(self, loss_scale: dict[int, float] | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Linear(3, 3)
        self.discriminator = nn.Linear(3, 1)
        self.loss_scale = loss_scale or {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        real, _ = batch
        g_opt, d_opt = self.optimizers()
        fake = self.generator(real.roll(1, dims=0))
        bce = nn.functional.binary_cross_entropy_with_logits
        scale = self.loss_scale.get(self.current_epoch, 1.0)

        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = scale * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()

        d_fake = self.discriminator(fake)
        g_loss = scale * bce(d_fake, torch.ones_like(d_fake))
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log("g_loss", g_loss, on_step=True, on_epoch=True)
        return (d_loss + g_loss).detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=G_LR)
        d_opt = torch.optim.Adam(
            [
                {"params": [self.discriminator.weight], "lr": D_LRS[0], "name": "weight"},
                {"params": [self.discriminator.bias], "lr": D_LRS[1], "name": "bias"},
            ]
        )
        return [g_opt, d_opt]


class ManualRegression(pl.LightningModule):
    """Linear regression under manual optimization: SGD with two param groups (weight, bias).

    It steps every ``step_every`` batches, accumulating gradients by hand in between.
    """

    BASE_LRS = (0.05, 0.02)

    def __init__(self, step_every: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = nn.Linear(3, 1)
        self.step_every = step_every

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        opt = self.optimizers()
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.manual_backward(loss / self.step_every)
        if (batch_idx + 1) % self.step_every == 0:
            opt.step()
            opt.zero_grad()
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss.detach()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            [
                {"params": [self.layer.weight], "lr": self.BASE_LRS[0]},
                {"params": [self.layer.bias], "lr": self.BASE_LRS[1]},
            ],
            momentum=0.9,
        )
