"""``from_preset`` / ``save_to_preset`` / ``presets`` for keras_rmz models,
and ``load_preset``, which resolves a handle to a verified folder and loads
the model it holds."""

import os
from pathlib import Path

from keras_rmz.presets import hub as hub_lib
from keras_rmz.presets import registry
from keras_rmz.presets.preset_io import check_model_class, load_preset_folder, resolve_class, save_preset


def _looks_like_path(handle):
    return handle.startswith((".", "~", "/")) or "/" in handle or os.sep in handle


def load_preset(handle, *, model_class=None, load_weights=True, force_download=False, token=None, **kwargs):
    """Loads the model a preset holds, whatever its class.

    Args:
        handle: one of
            - a built-in name (``keras_rmz.list_presets()``): a verified
              local copy in ``$KERAS_RMZ_WEIGHTS_DIR/<name>/`` or the
              repository's ``weights/<name>/`` serves first, otherwise the
              pinned Hub revision is downloaded; every file is checked
              against the registry's sha256;
            - ``"hf://owner/repo"`` or ``"hf://owner/repo@revision"``
              (branch, tag or commit): downloaded through huggingface_hub's
              cache (``HF_HUB_OFFLINE=1`` uses the cache only), files checked
              against the sha256 in metadata.json (against the registry's,
              metadata.json included, when the commit is a registered one);
            - a preset folder (str or ``pathlib.Path``), files checked
              against the sha256 in its metadata.json.
            A bare name is looked up in the registry first; write
            ``"./name"`` for a folder of that name.
        model_class: when given, the preset must hold this class or a
            subclass (``RecurrentMZ.from_preset`` passes ``RecurrentMZ``).
        load_weights: bool; False gives the architecture, freshly initialized.
        force_download: bool, download Hub files again (after a sha256 error
            on a cached copy).
        token: optional Hub token for private repos.
        **kwargs: constructor arguments that replace the preset's
            (``name``, ``trainable``, ``dtype``, ...).

    Returns:
        the model, uncompiled.

    Raises:
        ValueError: unknown name (listing the presets that exist), sha256
            mismatch (naming the file), a class other than ``model_class``,
            a config naming a class that is not a keras_rmz model.
        FileNotFoundError: no such folder, or a Hub preset that is not
            cached while offline (saying how to fix it).

    Example:

    ```python
    model = keras_rmz.presets.load_preset("hf://me/recurrent_mz_beads_m3@v1")
    model = keras_rmz.presets.load_preset("my_preset/")
    ```
    """
    model = _load(handle, model_class=model_class, load_weights=load_weights, force_download=force_download,
                  token=token, **kwargs)
    if load_weights:
        # How the user named the preset, for messages (keras-rmz finetune --preset NAME).
        model._keras_rmz_preset_handle = str(handle)
    return model


def _load(handle, *, model_class, load_weights, force_download, token, **kwargs):
    options = {"model_class": model_class, "load_weights": load_weights, "config_overrides": kwargs}
    if isinstance(handle, os.PathLike):
        return _load_folder(Path(handle), **options)
    if not isinstance(handle, str) or not handle:
        raise ValueError(
            "a preset handle is a built-in name, a preset folder, or 'hf://owner/repo[@revision]'; "
            f"got {handle!r}"
        )
    if handle.startswith(hub_lib.HF_PREFIX):
        return _load_hub(handle, force_download=force_download, token=token, **options)
    if handle in registry.PRESETS:
        return _load_builtin(handle, force_download=force_download, token=token, **options)
    folder = Path(handle).expanduser()
    if folder.is_dir():
        return _load_folder(folder, **options)
    if _looks_like_path(handle):
        hint = ""
        try:
            hub_lib.parse_hf_handle(hub_lib.HF_PREFIX + handle)
            hint = f" (for a Hub repo write 'hf://{handle}')"
        except ValueError:
            pass
        raise FileNotFoundError(f"no preset folder at {folder}{hint}")
    raise registry.unknown_preset_error(handle)


def read_preset_metadata(handle, *, force_download=False, token=None):
    """The verified ``metadata.json`` of a preset, without building its model.

    ``handle`` is resolved as ``load_preset`` resolves it (built-in name, its
    local copy first; ``hf://owner/repo[@revision]``, downloaded through the
    cache; a folder), and every file is checked against its sha256, so the
    metadata is the one of the weights ``load_preset`` would load. The
    command line reads it to check a request (pixel size, output range)
    before it starts a deep-learning backend.

    Returns:
        dict, the preset's metadata.

    Raises:
        the errors of ``load_preset`` (unknown name, no such folder, sha256
        mismatch, not cached while offline).

    Example:

    ```python
    metadata = keras_rmz.presets.read_preset_metadata("recurrent_mz_beads_m3")
    metadata["pixel_um"], metadata["output_range_um"]   # 0.1, [-7.5, 7.5]
    ```
    """
    from keras_rmz.presets.preset_io import verify_preset

    if isinstance(handle, os.PathLike):
        handle = str(handle)
    if not isinstance(handle, str) or not handle:
        raise ValueError(
            "a preset handle is a built-in name, a preset folder, or 'hf://owner/repo[@revision]'; "
            f"got {handle!r}"
        )
    if handle.startswith(hub_lib.HF_PREFIX):
        repo_id, revision = hub_lib.parse_hf_handle(handle)
        folder, commit = hub_lib.download_preset(repo_id, revision, token=token, force_download=force_download)
        return verify_preset(
            folder, registry.pinned_sha256(repo_id, commit), allowed_root=folder.parents[1],
            where=f"{handle} (commit {commit}, cached in {folder})",
        )
    if handle in registry.PRESETS:
        info = registry.get_preset(handle)
        local = registry.find_local_copy(handle)
        if local is not None and (not force_download or info.hub is None):
            return verify_preset(local, dict(info.sha256), where=f"the local copy of preset {handle!r} ({local})")
        if info.hub is None:
            dirs = " or ".join(str(d / handle) for d in registry.local_copy_dirs())
            raise FileNotFoundError(
                f"preset {handle!r} ships in the keras_rmz repository's weights/{handle}/ and is not published on "
                f"the Hub; no copy found in {dirs}"
            )
        repo_id, _ = hub_lib.parse_hf_handle(info.hub)
        folder, _ = hub_lib.download_preset(repo_id, info.revision, token=token, force_download=force_download)
        return verify_preset(folder, dict(info.sha256), allowed_root=folder.parents[1], where=f"preset {handle!r}")
    folder = Path(handle).expanduser()
    if folder.is_dir():
        return verify_preset(folder, where=f"preset folder {folder}")
    if _looks_like_path(handle):
        raise FileNotFoundError(f"no preset folder at {folder}")
    raise registry.unknown_preset_error(handle)


def _load_folder(folder, **options):
    if not folder.is_dir():
        raise FileNotFoundError(f"no preset folder at {folder}")
    return load_preset_folder(folder, where=f"preset folder {folder}", **options)


def _load_hub(handle, *, force_download, token, **options):
    repo_id, revision = hub_lib.parse_hf_handle(handle)
    folder, commit = hub_lib.download_preset(repo_id, revision, token=token, force_download=force_download)
    # A registered commit is held to the registry's sha256, metadata.json included.
    return load_preset_folder(
        folder,
        expected_sha256=registry.pinned_sha256(repo_id, commit),
        allowed_root=folder.parents[1],
        where=f"{handle} (commit {commit}, cached in {folder})",
        **options,
    )


def _load_builtin(name, *, force_download, token, **options):
    info = registry.get_preset(name)
    if options["model_class"] is not None:
        # Refuse the wrong class before any download (the class asked for is
        # imported, and with it the models package that registers the rest).
        check_model_class(resolve_class(info.class_name, info.module), options["model_class"], f"preset {name!r}")
    expected = dict(info.sha256)
    local = registry.find_local_copy(name)
    if local is not None and (not force_download or info.hub is None):
        return load_preset_folder(
            local,
            expected_sha256=expected,
            where=f"the local copy of preset {name!r} ({local}; " + (
                "delete it to download from the Hub" if info.hub is not None
                else "it is not published on the Hub: restore the folder from the keras_rmz repository, "
                     f"e.g. git checkout -- weights/{name}"
            ) + ")",
            **options,
        )
    if info.hub is None:
        dirs = " or ".join(str(d / name) for d in registry.local_copy_dirs())
        raise FileNotFoundError(
            f"preset {name!r} ships in the keras_rmz repository's weights/{name}/ and is not published on the "
            f"Hub; no copy found in {dirs}. Install keras_rmz from a checkout of the repository "
            f"(pip install -e .), or set {registry.WEIGHTS_DIR_ENV} to a folder holding {name}/"
        )
    repo_id, _ = hub_lib.parse_hf_handle(info.hub)
    try:
        folder, commit = hub_lib.download_preset(repo_id, info.revision, token=token, force_download=force_download)
    except FileNotFoundError as error:
        dirs = " or ".join(str(d / name) for d in registry.local_copy_dirs())
        raise FileNotFoundError(f"preset {name!r}: no local copy in {dirs}, and {error}") from error
    return load_preset_folder(
        folder,
        expected_sha256=expected,
        allowed_root=folder.parents[1],
        where=f"preset {name!r} ({info.handle}, cached in {folder})",
        **options,
    )


def _plain(value):
    """A copy in plain dicts and lists (Keras may wrap an attribute's dict
    for tracking); the model's own record is never handed out."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class _ClassProperty:
    """A read-only property of the class (``Model.presets``)."""

    def __init__(self, fget):
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, instance, owner=None):
        return self.fget(owner if owner is not None else type(instance))


class PresetMixin:
    """Adds presets to a keras_rmz model class.

    Mixed into ``ReconstructionModel`` (so ``RecurrentMZ``, ``DeepZ``,
    ``UNet3D``) and the ``Discriminator``:
    ``class ReconstructionModel(PresetMixin, keras.Model)``.

    - ``Model.from_preset(handle, **kwargs)``: loads a preset of this class
      (or a subclass) from a built-in name, a folder or an ``hf://`` handle.
    - ``model.save_to_preset(folder, metadata=None, model_card=None)``:
      writes the four-file preset folder atomically.
    - ``Model.presets``: the built-in preset names of this class.

    Example:

    ```python
    model = keras_rmz.RecurrentMZ.from_preset("hf://me/recurrent_mz_beads_m3@main")
    model.compile()
    model.fit(dataset, epochs=2)
    model.save_to_preset("my_preset/", metadata={"num_inputs": 3})
    keras_rmz.RecurrentMZ.presets   # ("recurrent_mz_beads_m3", ...)
    ```
    """

    @classmethod
    def from_preset(cls, handle, load_weights=True, **kwargs):
        """Loads a preset of this class (see ``keras_rmz.presets.load_preset``).

        Args:
            handle: a built-in name, a preset folder, or
                ``"hf://owner/repo[@revision]"``.
            load_weights: bool; False gives the architecture, freshly
                initialized.
            **kwargs: ``force_download``, ``token``, or constructor
                arguments that replace the preset's (``name``, ``dtype``).

        Raises:
            ValueError: when the preset holds a class that is not this one
                (or a subclass), and for the errors of ``load_preset``.
        """
        return load_preset(handle, model_class=cls, load_weights=load_weights, **kwargs)

    def save_to_preset(self, folder, metadata=None, model_card=None):
        """Writes this model as a preset folder (see
        ``keras_rmz.presets.save_preset``): ``config.json``,
        ``model.weights.h5``, ``metadata.json`` (``metadata`` plus versions,
        backend and sha256) and ``README.md`` (``model_card``, or one made
        from the metadata). Returns the folder's path."""
        return save_preset(self, folder, metadata=metadata, model_card=model_card)

    @property
    def preset_metadata(self):
        """The metadata of the preset this model was loaded from (a copy of
        its verified ``metadata.json``: pixel size, input spacing, M, output
        range, optics, training, metrics), or None for a model not loaded
        from a preset. Read-only; ``reconstruct`` checks its requests against
        it (docs/inference.md)."""
        metadata = getattr(self, "_keras_rmz_preset_metadata", None)
        if metadata is None:
            return None
        return _plain(metadata)

    @_ClassProperty
    def presets(cls):
        """Names of the built-in presets of this class (and its subclasses)."""
        return tuple(info.name for info in registry.list_presets(cls))
