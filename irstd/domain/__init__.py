"""Cross-domain detection (paper 000, Ivan-ISTD): target-domain frames, synthesis, noise, protocols.

Numpy / OpenCV / PyWavelets / scikit-image code, no torch; the training strategies
(:mod:`irstd.strategies.wcs`, :mod:`irstd.strategies.rnil`) and the commands build on it.

* :mod:`irstd.domain.frames` -- a folder of unlabelled target-domain frames, its one seeded
  70/30 split (:func:`~irstd.domain.frames.split_frames`: 70 % unlabelled domain, 30 % held out
  for counting false targets only), reading with errors that name the file.
* :mod:`irstd.domain.brd` -- Background Region Detection: wavelet multi-frequency filtering
  (WMF, paper 000's equation) and the per-block background probability ``p``.
* :mod:`irstd.domain.dis` -- Dual-indicator Selection of hard targets (PixAcc < tau_p and
  IoU < tau_i per target window).
* :mod:`irstd.domain.regen` -- re-generation: grid windows of the background ranked by SSIM
  against a hard patch, Poisson blending (``cv2.seamlessClone``) that carries the mask.
* :mod:`irstd.domain.synthesis` -- the whole wavelet-guided cross-domain synthesis (WCS) as a
  dataset writer (``irstd domain-synth``) and as the sampler the ``wcs`` strategy uses.
* :mod:`irstd.domain.noise` -- the real-domain noise library of RNIL.
* :mod:`irstd.domain.dynamic` -- the Dynamic-ISTD protocol (``irstd dynamic``).
"""

from __future__ import annotations
