"""The whole-CT pipelines any benchmark may use: a CT in Hounsfield units in, a uint8 label
volume on the CT's own grid out, run as the complete loop a user runs.

One module per job, imported by name (this package hands nothing on):

- :mod:`~segbench.pipelines.scan`: the CT itself: :class:`~segbench.pipelines.scan.CT`, the
  benchmark's phantom CT (cached), a NIfTI checked before any work and read.
- :mod:`~segbench.pipelines.resample`: around a 3D network: nnU-Net's CT normalisation, the
  image resampled to the network's grid, labels or logits back to the CT's, argmax.
- :mod:`~segbench.pipelines.loop`: the loops: slice-wise 2D, sliding-window 3D, ``run``.
- :mod:`~segbench.pipelines.inputs`: what the harness needs besides the CT: one network call's
  example input, INT8 calibration inputs.
- :mod:`~segbench.pipelines.scenario`: the whole_ct scenario (``scenarios.WholeCT`` delegates
  to :class:`~segbench.pipelines.scenario.LoopScenario`): one timed call = one CT, the last
  loop's labels scored against truth or against the FP32 eager loop's saved labels.

The sliding window itself is :mod:`segbench.volume` (tile arithmetic :mod:`segbench.tiling`);
what a pipeline is (network, spacing, patch, step, way back) is
:class:`segbench.catalogue.Pipeline`.
"""
