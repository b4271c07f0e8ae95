"""A user's own network as input: the network someone already has, run as a whole-CT pipeline
under the project's runtimes and compared with its own FP32 output.

One module per kind of network, imported by name: :mod:`segbench.ownnet.nnunet_folder` (an
nnU-Net v2 model folder: plans, dataset, checkpoint checked; the network its plans name, with
its weights) and :mod:`segbench.ownnet.onnx_file` (an ONNX segmentation network run
slice-wise: the file checked, its windowing and slice size, its cells).
Everything here is checked before any work: a file that cannot run is one line naming it
(``cli.UsageError``), never a half-run benchmark.
"""
