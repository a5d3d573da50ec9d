"""The napari plugin of keras_rmz (``pip install 'keras-rmz[napari]'``),
declared in ``napari.yaml`` (npe2): a reconstruction widget and a sample
stack (docs/napari.md).

- ``compute.reconstruct_layer``: the widget's work on numpy data (no Qt, no
  viewer): a volume and the layer's physical scale from planes of a stack.
- ``widget.reconstruct_widget``: the dock widget (magicgui), run in a worker
  thread with progress; the volume comes back as a new image layer.
- ``sample_data.simulated_beads``: a simulated wide-field bead stack.

napari's own readers open the user's files (TIFF through napari's builtins
or tifffile-based readers); this plugin reads nothing itself.
"""
