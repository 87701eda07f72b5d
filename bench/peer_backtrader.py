#!/usr/bin/env python3
"""Peer benchmark: backtrader running a simple equivalent rule on the same bundled data.

EMA(12)/EMA(26) cross, long-only, all-in per symbol, taker fee 10 bps, over the 9 bundled hourly files
(the same 65,664 candles the hybrid backtest replays). Prints candles per second. Needs the `bench`
extra (`.venv/bin/pip install -e '.[bench]'`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backtrader as bt  # noqa: E402
import pandas as pd  # noqa: E402

from tracer.data.replay import bundled_dir  # noqa: E402

BASES = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "BNB", "LINK", "AVAX"]


class EmaCross(bt.Strategy):
    def __init__(self):
        self.cross = {d: bt.ind.CrossOver(bt.ind.EMA(d, period=12), bt.ind.EMA(d, period=26)) for d in self.datas}

    def next(self):
        for d, x in self.cross.items():
            pos = self.getposition(d).size
            if x[0] > 0 and not pos:
                self.buy(data=d, size=(self.broker.getcash() / len(self.datas)) / d.close[0] * 0.99)
            elif x[0] < 0 and pos:
                self.close(data=d)


def run() -> tuple[int, float]:
    cerebro = bt.Cerebro(stdstats=False)
    n = 0
    t0 = time.perf_counter()
    for base in BASES:
        df = pd.read_csv(bundled_dir() / f"candles_1h_{base}USDT.csv", parse_dates=["timestamp"], index_col="timestamp")
        df.index = df.index.tz_localize(None)
        n += len(df)
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=base)
    cerebro.addstrategy(EmaCross)
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.run()
    return n, time.perf_counter() - t0


if __name__ == "__main__":
    n, dt = run()
    print(f"backtrader EMA cross, 9 symbols x 1h: {n:,} candles in {dt:.2f} s ({n / dt:,.0f} candles/s)")
