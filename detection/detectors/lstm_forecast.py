"""LSTM one-step forecaster (seed 000) scored by its residual, with a learned threshold.

Seed 000 trains on 95 % of the history, validates on the last 5 %, and flags residuals above a
fixed 0.65. Here the series is first transformed (log-returns for prices, the level or the
difference otherwise: transforms.py) and robustly standardised with the training median / MAD,
so the network sees O(1) numbers on any scale. The residual scale and the threshold are learned
from the *validation* residuals (out of sample): raw = |residual| / (1.4826 * MAD of validation
residuals), and the threshold is their high quantile, never below the floor.

Determinism: torch is seeded from `seed`, training uses a fixed number of epochs and a fixed
ordering, and threads are pinned (`threads`, default min(2, cpus)). The weights are stored as
plain numpy arrays in the artifact and loaded into a freshly built module (no torch.load, no
pickle).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from . import transforms
from .base import Detector, RawScores, register
from .calibration import TailCalibrator

__all__ = ["LSTMForecast"]

_MAD_TO_SIGMA = 1.4826
_CLIP = 10.0  # standardised inputs are clipped so one bad print cannot saturate the cell state
_BATCH_SCORE = 4096


def _torch():
    import torch

    return torch


def _build(hidden: int):
    torch = _torch()

    class Forecaster(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(input_size=1, hidden_size=hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x):  # x: (batch, seq, 1) -> (batch,)
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :]).squeeze(-1)

    return Forecaster()


@register
class LSTMForecast(Detector):
    name = "lstm_forecast"
    defaults = {"seq_len": 32, "hidden": 24, "epochs": 5, "batch_size": 128, "lr": 3e-3,
                "validation_fraction": 0.05, "max_train_windows": 12000, "transform": "auto",
                "threads": None, "calibration_quantile": 0.999}
    # Higher than the z-score's 6: the forecaster has no seasonal profile, so the opening
    # minutes' residuals are large on every series.
    floors = {"residual": 8.0}

    def __init__(self, **params):
        super().__init__(**params)
        self.kind, self.loc, self.scale, self.resid_scale = "level", 0.0, 1.0, 1.0
        self.module = None

    @property
    def context(self) -> int:
        return int(self.params["seq_len"]) + 2

    @property
    def min_history(self) -> int:
        return int(self.params["seq_len"]) + 2

    def _threads(self) -> None:
        n = self.params["threads"] or min(2, os.cpu_count() or 1)
        torch = _torch()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def _standardised(self, frame: pd.DataFrame) -> np.ndarray:
        x = transforms.transform(frame["value"].to_numpy(), self.kind)
        return np.clip((x - self.loc) / self.scale, -_CLIP, _CLIP)

    def _windows(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs (n, seq), targets (n,), target index) for every position with full history."""
        L = int(self.params["seq_len"])
        if len(z) <= L:
            return np.zeros((0, L)), np.zeros(0), np.zeros(0, dtype=int)
        win = np.lib.stride_tricks.sliding_window_view(z, L)[:-1]
        target_idx = np.arange(L, len(z))
        return np.nan_to_num(win), z[target_idx], target_idx

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Forecasts (standardised units) for a batch of input windows (the hot path)."""
        torch = _torch()
        self._threads()
        out = np.empty(len(inputs))
        with torch.inference_mode():
            for lo in range(0, len(inputs), _BATCH_SCORE):
                chunk = torch.from_numpy(np.ascontiguousarray(inputs[lo: lo + _BATCH_SCORE], dtype=np.float32))
                out[lo: lo + len(chunk)] = self.module(chunk.unsqueeze(-1)).numpy()
        return out

    def _fit(self, frame: pd.DataFrame) -> dict:
        torch = _torch()
        p = self.params
        self._threads()
        torch.manual_seed(p["seed"])
        rng = np.random.default_rng(p["seed"])
        self.kind = transforms.choose(p["transform"], frame["value"].to_numpy(),
                                      bool(p["calendar"]) or "open" in frame.columns, window=240)
        x = transforms.transform(frame["value"].to_numpy(), self.kind)
        fin = x[np.isfinite(x)]
        self.loc = float(np.median(fin)) if len(fin) else 0.0
        mad = float(np.median(np.abs(fin - self.loc))) * _MAD_TO_SIGMA if len(fin) else 0.0
        self.scale = ((mad or float(np.std(fin))) if len(fin) else 0.0) or 1.0
        inputs, targets, _ = self._windows(self._standardised(frame))
        ok = np.isfinite(targets)
        inputs, targets = inputs[ok], targets[ok]
        if len(targets) < 20:
            raise ValueError(f"lstm_forecast needs at least {int(p['seq_len']) + 20} training points")
        n_val = max(10, int(round(len(targets) * p["validation_fraction"])))
        tr_x, tr_y = inputs[:-n_val], targets[:-n_val]
        va_x, va_y = inputs[-n_val:], targets[-n_val:]
        if len(tr_y) > p["max_train_windows"]:  # keep the most recent windows: training time is bounded
            tr_x, tr_y = tr_x[-p["max_train_windows"]:], tr_y[-p["max_train_windows"]:]
        self.module = _build(int(p["hidden"]))
        opt = torch.optim.Adam(self.module.parameters(), lr=p["lr"])
        loss_fn = torch.nn.HuberLoss(delta=1.0)  # robust to the anomalies hiding in history
        X = torch.from_numpy(tr_x.astype(np.float32)).unsqueeze(-1)
        Y = torch.from_numpy(tr_y.astype(np.float32))
        losses = []
        self.module.train()
        for _ in range(int(p["epochs"])):
            order = torch.from_numpy(rng.permutation(len(Y)))
            total = 0.0
            for lo in range(0, len(Y), p["batch_size"]):
                idx = order[lo: lo + p["batch_size"]]
                opt.zero_grad()
                loss = loss_fn(self.module(X[idx]), Y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(Y))
        self.module.eval()
        resid = np.abs(va_y - self.predict(va_x))
        # Mean absolute residual (x 1.2533 = sigma for a normal), not the median: residuals of
        # tick-sized returns are mostly exactly 0, which would make the median scale 0.
        self.resid_scale = float(np.mean(resid) * 1.2533) or 1.0
        raw_val = resid / self.resid_scale
        self.calibrators["residual"] = TailCalibrator.fit(
            raw_val, floor=self.floors["residual"], quantile=p["calibration_quantile"],
            margin=p["calibration_margin"])
        return {"transform": self.kind, "train_windows": int(len(tr_y)), "validation_windows": int(n_val),
                "train_loss": losses, "validation_mae": float(np.mean(np.abs(va_y - self.predict(va_x))))}

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        n = len(full) - start
        if not self.fitted:
            return RawScores(channels={"residual": np.full(n, np.nan)})
        z = self._standardised(full)
        inputs, targets, idx = self._windows(z)
        keep = idx >= start
        pred_z = np.full(n, np.nan)
        if keep.any():
            pred_z[idx[keep] - start] = self.predict(inputs[keep])
        actual = z[start:]
        raw = np.abs(actual - pred_z) / self.resid_scale
        prev = np.concatenate([[np.nan], full["value"].to_numpy()[:-1]])[start:]
        kind = self.kind

        def band(thresholds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            half = thresholds["residual"] * self.resid_scale
            out = []
            for zz in (pred_z, pred_z - half, pred_z + half):
                step = zz * self.scale + self.loc
                out.append(prev + step if kind == "diff" else prev * np.exp(step) if kind == "logret" else step)
            return out[0], out[1], out[2]

        def notes(i: int) -> dict:
            return {"forecast_z": round(float(pred_z[i]), 3), "actual_z": round(float(actual[i]), 3)}

        return RawScores(channels={"residual": raw}, band=band, notes=notes)

    def _model_dump(self) -> tuple[dict, dict]:
        meta = {"kind": self.kind, "loc": self.loc, "scale": self.scale, "resid_scale": self.resid_scale}
        arrays = {f"w.{k}": v.detach().numpy().copy() for k, v in self.module.state_dict().items()}
        return meta, arrays

    def _model_load(self, meta: dict, arrays: dict) -> None:
        torch = _torch()
        self.kind, self.loc = meta["kind"], float(meta["loc"])
        self.scale, self.resid_scale = float(meta["scale"]), float(meta["resid_scale"])
        self.module = _build(int(self.params["hidden"]))
        state = {k[2:]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k.startswith("w.")}
        try:
            self.module.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # wrong shapes or names: not this model's weights
            raise ValueError(f"weights do not fit the model: {exc}") from exc
        self.module.eval()
