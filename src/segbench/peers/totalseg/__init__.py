"""The real TotalSegmentator, run as its users run it (``TotalSegmentator -i ct.nii.gz -o out
--fast``).

The project's 3D rows are its own re-implementation of TotalSegmentator's network and loop; this
package puts the tool itself beside them, so a reader sees what the shipped command costs on the
same CT in the same run, and how faithful the re-implementation is.

Nothing is downloaded. Before a run, :func:`planting.plant_home` writes a TotalSegmentator home (a
temporary directory named by ``TOTALSEG_HOME_DIR``; never the user's home) holding, for each
mode, what the tool would otherwise fetch: nnU-Net's ``dataset.json``, ``plans.json`` and
``fold_0/checkpoint_final.pth`` of a network of exactly the architecture the tool loads, with
random weights. The tool decides the weights are present when the dataset folder exists, so it
goes straight to prediction. Random weights make the labels meaningless, not the time: the same
convolutions run on the same shapes (speed only; nothing here measures quality).

The folder names, trainer, resampling and class names are read from the installed package
(:func:`plans.tool_layout`), so a new TotalSegmentator release that moves them is followed, not
contradicted. The run is kept off the network three ways: the home's ``config.json`` turns
usage statistics off, the proxy variables point at a closed local port, and (by default) a
``sitecustomize`` module in the run directory makes every Python process of the command refuse
internet sockets and write down any attempt, which the record reports.

One module per job, imported by name (this file re-exports nothing):

- ``install``: is the optional group there (found without importing it), versions, row label;
- ``plans``: what the installed tool expects per mode, and the nnU-Net plans of a network;
- ``planting``: planting the home (config, dataset.json, plans, random-weight checkpoint);
- ``launch``: the CT file, the command, its environment and the network guard;
- ``stagelog``: the tool's stage lines parsed from its log, medians over runs;
- ``watch``: one command run in its own session, its process tree's memory sampled;
- ``runner``: the run loop that makes a record per row, and the faithfulness maths.

``totalsegmentator`` and ``nnunetv2`` are imported inside functions only: they are an optional
dependency group.
"""
