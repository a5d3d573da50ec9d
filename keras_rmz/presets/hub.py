"""Presets on the Hugging Face Hub: ``hf://owner/repo[@revision]`` handles,
downloads through ``huggingface_hub`` (its cache, offline mode, revision
pinning) and ``push_to_hub``.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache
location once, when it is imported. This module reads them from
``os.environ`` at every call and passes them explicitly (``endpoint=``,
``cache_dir=``, ``local_files_only=``), so a setting made after import (a
notebook, a test) is honoured.
"""

import os
import re
from pathlib import Path

from keras_rmz.presets.preset_io import MODEL_CARD_FILE, PRESET_FILES, verify_preset

HF_PREFIX = "hf://"
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
# Branches, tags and commits; "/" for names such as "refs/pr/1".
_REVISION_RE = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_TRUE = {"1", "on", "yes", "true"}


def parse_hf_handle(handle):
    """Splits ``"hf://owner/repo[@revision]"`` into ``(repo_id, revision)``.

    ``revision`` is None when the handle has no ``@``.

    Raises:
        ValueError: for a handle of another form, saying what is accepted.
    """
    if not isinstance(handle, str) or not handle.startswith(HF_PREFIX):
        raise ValueError(f"a Hub handle is 'hf://owner/repo' or 'hf://owner/repo@revision'; got {handle!r}")
    body = handle[len(HF_PREFIX) :]
    repo_id, at, revision = body.partition("@")
    if not _REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ValueError(
            f"a Hub handle is 'hf://owner/repo[@revision]' with owner and repo made of letters, digits, '-', "
            f"'_' and '.'; got {handle!r}"
        )
    if at:
        if not _REVISION_RE.match(revision) or any(part in (".", "..") for part in revision.split("/")):
            raise ValueError(
                f"the revision of a Hub handle is a branch, tag or commit hash (letters, digits, '.', '_', '-', "
                f"'/'); got {revision!r} in {handle!r}"
            )
        return repo_id, revision
    return repo_id, None


def hub_settings():
    """The Hub settings in force now: a dict with ``endpoint`` (None: the
    library's default), ``offline`` (bool) and ``cache_dir`` (None: the
    library's default), read from ``os.environ`` at this call."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None
    # Offline if the environment says so now, or said so when huggingface_hub
    # was imported (it then refuses every request whatever we pass).
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
    )
    return {"endpoint": endpoint, "offline": offline, "cache_dir": cache_dir}


def _offline_help(handle, settings):
    from huggingface_hub import constants

    cache = settings["cache_dir"] or constants.HF_HUB_CACHE
    copy = ("put a copy of the preset folder on this machine and load the folder (for a built-in preset: "
            "$KERAS_RMZ_WEIGHTS_DIR/<name>/)")
    if settings["offline"]:
        when = ", set when huggingface_hub was imported" if constants.HF_HUB_OFFLINE else ""
        return (
            f"{handle} is not in the Hugging Face cache ({cache}) and offline mode is on (HF_HUB_OFFLINE=1{when}). "
            f"To fix: load it once with network access (unset HF_HUB_OFFLINE before starting Python), or {copy}."
        )
    endpoint = settings["endpoint"] or constants.ENDPOINT
    named = " (set by HF_ENDPOINT)" if settings["endpoint"] else ""
    return (
        f"{handle} is not in the Hugging Face cache ({cache}) and the Hub at {endpoint}{named} could not be "
        f"reached. To fix: check the network connection and the address{named and ' in HF_ENDPOINT'}, or {copy}."
    )


def _transport_errors():
    """The exception classes of a broken connection, for whichever HTTP
    client this huggingface_hub uses (httpx2, httpx or requests)."""
    import importlib

    found = [ConnectionError, TimeoutError]
    for module_name, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                               ("requests", ("ConnectionError", "Timeout"))):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, name) for name in names if hasattr(module, name)]
    return tuple(found)


def download_preset(repo_id, revision=None, *, token=None, force_download=False):
    """Fetches the four preset files of a Hub repo into the Hugging Face cache.

    Only ``config.json``, ``model.weights.h5``, ``metadata.json`` and
    ``README.md`` are fetched, at one commit. With ``HF_HUB_OFFLINE=1`` (or
    when the Hub cannot be reached) the cached copy of that revision serves.

    Args:
        repo_id: ``"owner/repo"``.
        revision: branch, tag or commit (default ``"main"``).
        token: optional Hub token (private repos).
        force_download: bool, fetch again even if cached (after a
            corrupted download).

    Returns:
        ``(snapshot_folder, commit)``: the cached folder (its files are links
        into the cache's ``blobs/``) and the commit it holds.

    Raises:
        FileNotFoundError: not cached while offline (saying how to fix it),
            or no such repo.
        ValueError: no such revision.
    """
    import huggingface_hub
    from huggingface_hub import constants, errors

    settings = hub_settings()
    handle = f"{HF_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(PRESET_FILES),
            cache_dir=settings["cache_dir"],
            endpoint=settings["endpoint"],
            local_files_only=settings["offline"],
            token=token,
            force_download=force_download,
        )
    except errors.RevisionNotFoundError as error:
        raise ValueError(f"{handle}: the Hub repo has no revision {revision!r}") from error
    except errors.RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"{handle}: no such Hub model repo (or it is private and no valid token was given)"
        ) from error
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, errors.IncompleteSnapshotError) as error:
        raise FileNotFoundError(_offline_help(handle, settings)) from error
    except errors.HfHubHTTPError as error:
        raise OSError(f"{handle}: the Hub answered {error}") from error
    except _transport_errors() as error:
        raise OSError(
            f"{handle}: the download from {settings['endpoint'] or constants.ENDPOINT} broke off after several "
            f"retries ({type(error).__name__}: {error}). Nothing incomplete is used: the part already fetched "
            "waits in the Hugging Face cache, and loading the preset again resumes from it."
        ) from error
    folder = Path(folder)
    return folder, folder.name


def push_to_hub(folder, repo_id, *, revision=None, private=False, token=None, commit_message=None):
    """Publishes a preset folder (with its model card) as a Hub model repo.

    The folder is verified first (its files against the sha256 in its
    metadata.json); only the four preset files are uploaded, and any other
    file in the repo is removed, so the repo holds exactly the preset.

    Args:
        folder: the preset folder (``save_to_preset``'s output).
        repo_id: ``"owner/repo"`` (``"hf://owner/repo"`` is accepted).
        revision: branch to commit to (created if missing); default the
            repo's main branch.
        private: bool, create the repo private.
        token: Hub token (default: the logged-in token).
        commit_message: default ``"Upload keras_rmz preset <folder name>"``.

    Returns:
        ``huggingface_hub.CommitInfo``; ``.oid`` is the commit to pin in a
        registry entry (``registry_entry_for(folder, repo_id, info.oid)``).

    Example:

    ```python
    model.save_to_preset("my_preset/", metadata={...})
    info = keras_rmz.presets.push_to_hub("my_preset/", "me/recurrent_mz_beads_m3")
    print(info.oid)
    ```
    """
    import huggingface_hub

    folder = Path(folder)
    if isinstance(repo_id, str) and repo_id.startswith(HF_PREFIX):
        repo_id, handle_revision = parse_hf_handle(repo_id)
        if handle_revision is not None:
            if revision is not None and revision != handle_revision:
                raise ValueError(f"two revisions given: {handle_revision!r} in the handle and revision={revision!r}")
            revision = handle_revision
    else:
        repo_id, _ = parse_hf_handle(f"{HF_PREFIX}{repo_id}")
    verify_preset(folder)
    if not (folder / MODEL_CARD_FILE).read_text(encoding="utf-8").strip():
        raise ValueError(f"{MODEL_CARD_FILE} in {folder} is empty; a published preset needs a model card")
    settings = hub_settings()
    if settings["offline"]:
        raise OSError("cannot push to the Hub in offline mode (HF_HUB_OFFLINE=1)")
    api = huggingface_hub.HfApi(endpoint=settings["endpoint"], token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        allow_patterns=list(PRESET_FILES),
        delete_patterns=["*"],
        commit_message=commit_message or f"Upload keras_rmz preset {folder.name}",
    )
