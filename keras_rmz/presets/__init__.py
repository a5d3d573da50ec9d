"""Presets: trained models as verified four-file folders, locally or on the
Hugging Face Hub.

```python
import keras_rmz

keras_rmz.list_presets()                                   # the built-in presets
model = keras_rmz.RecurrentMZ.from_preset("hf://me/my_preset@main")
model.save_to_preset("my_preset/", metadata={"num_inputs": 3})
keras_rmz.presets.verify_preset("my_preset/")
keras_rmz.presets.push_to_hub("my_preset/", "me/my_preset")
```

See docs/presets.md.
"""

from keras_rmz.presets.hub import download_preset, parse_hf_handle, push_to_hub
from keras_rmz.presets.preset_io import (
    CONFIG_FILE,
    METADATA_FIELDS,
    METADATA_FILE,
    MODEL_CARD_FILE,
    PRESET_FILES,
    WEIGHTS_FILE,
    save_preset,
    sha256_file,
    verify_preset,
)
from keras_rmz.presets.preset_mixin import PresetMixin, load_preset, read_preset_metadata
from keras_rmz.presets.registry import (
    PRESETS,
    PresetInfo,
    format_registry_entry,
    get_preset,
    list_presets,
    local_copy_status,
    register_presets,
    registry_entry_for,
)

__all__ = [
    "CONFIG_FILE",
    "METADATA_FIELDS",
    "METADATA_FILE",
    "MODEL_CARD_FILE",
    "PRESETS",
    "PRESET_FILES",
    "PresetInfo",
    "PresetMixin",
    "WEIGHTS_FILE",
    "download_preset",
    "format_registry_entry",
    "get_preset",
    "list_presets",
    "load_preset",
    "local_copy_status",
    "parse_hf_handle",
    "push_to_hub",
    "read_preset_metadata",
    "register_presets",
    "registry_entry_for",
    "save_preset",
    "sha256_file",
    "verify_preset",
]
