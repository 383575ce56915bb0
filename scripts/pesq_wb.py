#!/usr/bin/env python3
"""PESQ-WB (ITU-T P.862.2) of a degraded speech file against its reference.

Usage: pesq_wb.py REFERENCE.wav DEGRADED.wav  -> prints the MOS-LQO score.
Both files: 16 kHz mono 16-bit (the voice benchmark converts with sox). Run with the
virtualenv scripts/bench.sh makes (pip package `pesq`).
"""
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: need 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ref, deg = read(sys.argv[1]), read(sys.argv[2])
    n = min(len(ref), len(deg))
    print(f"{pesq(16000, ref[:n], deg[:n], 'wb'):.3f}")


if __name__ == "__main__":
    main()
