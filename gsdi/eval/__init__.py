"""How generations are measured against the world (docs/eval/eval.md): the yardstick (`evaluate`:
fidelity KID, sharpness, PSNR, IoU, front/back, haze, size), the critic and the recogniser it uses,
the degradations the critic learned to see (`degrade`), and their shared training loop (`training`).

This package sits above the world, the priors and the guidance; nothing below imports it.
"""
