"""``keras-rmz presets``: list the built-in presets, show a preset's metadata,
verify a preset folder, publish one on the Hub, and print the registry
entry of a new one.

```
keras-rmz presets                                 # the same as: keras-rmz presets list
keras-rmz presets info recurrent_mz_beads_m3      # or a folder, or hf://owner/repo[@rev]
keras-rmz presets verify my_preset/               # or a built-in name, or hf://owner/repo[@rev]
keras-rmz presets entry weights/my_preset --hub owner/repo --revision <commit>
keras-rmz presets push weights/my_preset --repo owner/repo    # publish; prints the commit and the registry entry
```

None of these loads a model, so none imports a deep-learning backend.
``push`` uploads with ``huggingface_hub`` (``keras_rmz.presets.push_to_hub``,
to ``HF_ENDPOINT`` when set), with the token of ``hf auth login`` or
``HF_TOKEN``.
"""

import json
from pathlib import Path

from keras_rmz.presets import hub, preset_io, registry


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "presets",
        help="list, inspect, verify and publish presets",
        description="List the built-in presets (the default), show a preset's metadata, verify a preset folder's "
                    "sha256, publish one on the Hub.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=run_list)  # no action: list the presets

    listing = actions.add_parser("list", help="the built-in presets: name, class, description, local copy")
    listing.set_defaults(func=run_list)

    info = actions.add_parser("info", help="the metadata of a built-in preset, a preset folder or a Hub preset")
    info.add_argument("preset", metavar="NAME|DIR|hf://...", help="a built-in name, a folder, or hf://owner/repo[@rev]")
    info.set_defaults(func=run_info)

    verify = actions.add_parser("verify", help="check a preset folder's files against their sha256")
    verify.add_argument(
        "preset",
        metavar="DIR|NAME|hf://...",
        help="a preset folder (checked against its metadata.json), a built-in name (its local copy, checked "
        "against the registry), or hf://owner/repo[@rev] (downloaded into the Hugging Face cache)",
    )
    verify.set_defaults(func=run_verify)

    entry = actions.add_parser("entry", help="print the registry entry of a preset folder (on the Hub, or in weights/ only)")
    entry.add_argument("folder", metavar="DIR", help="the preset folder, as uploaded")
    entry.add_argument("--hub", default=None, metavar="OWNER/REPO",
                       help="the Hub repo holding it (leave out, with --revision, for a preset that ships only in weights/)")
    entry.add_argument("--revision", default=None, metavar="COMMIT", help="the Hub commit (40 hex digits)")
    entry.add_argument("--name", default=None, help="the preset's name (default: the folder's name)")
    entry.add_argument("--description", default=None, help="one line (default: the metadata's description)")
    entry.set_defaults(func=run_entry)

    push = actions.add_parser(
        "push", help="publish a preset folder as a Hub model repo; prints the commit to pin in the registry")
    push.add_argument("folder", metavar="DIR", help="the preset folder (checked against its sha256 first)")
    push.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub model repo (created if missing)")
    push.add_argument("--revision", default=None, metavar="BRANCH", help="branch to commit to (default: main)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--message", default=None, help="commit message")
    push.add_argument("--name", default=None, help="the preset's registry name (default: the folder's name)")
    push.set_defaults(func=run_push)
    return parser


def run(args):
    return args.func(args)


def _table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def run_list(args):
    presets = registry.list_presets()
    if not presets:
        print("No built-in presets yet. Load a preset folder or an hf://owner/repo[@revision] handle.")
        return 0
    rows = [("NAME", "CLASS", "LOCAL COPY", "DESCRIPTION")]
    for info in presets:
        status, folder, _ = registry.local_copy_status(info.name)
        local = f"{status} ({folder})" if folder is not None else "none"
        rows.append((info.name, info.class_short_name, local, info.description))
    print(_table(rows))
    return 0


def _print_mapping(mapping, indent=""):
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            print(f"{indent}{key}:")
            _print_mapping(value, indent + "  ")
        else:
            print(f"{indent}{key}: {json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}")


def _is_folder_argument(text):
    return text not in registry.PRESETS and (Path(text).expanduser().is_dir() or "/" in text or text.startswith("."))


def _hub_folder(handle):
    """Downloads (or finds in the cache) the preset of an hf:// handle:
    ``(folder, commit, expected_sha256)``, the last from the registry when
    the commit is a registered one."""
    repo_id, revision = hub.parse_hf_handle(handle)
    folder, commit = hub.download_preset(repo_id, revision)
    return folder, commit, registry.pinned_sha256(repo_id, commit)


def run_info(args):
    if args.preset.startswith(hub.HF_PREFIX):
        folder, commit, expected = _hub_folder(args.preset)
        metadata = preset_io.verify_preset(folder, expected, allowed_root=folder.parents[1], where=args.preset)
        print(f"{args.preset}: commit {commit}, cached in {folder} (sha256 verified)")
        _print_mapping(metadata)
        return 0
    if _is_folder_argument(args.preset):
        folder = Path(args.preset).expanduser()
        metadata = preset_io.verify_preset(folder)
        print(f"preset folder: {folder} (sha256 verified)")
        _print_mapping(metadata)
        return 0
    info = registry.get_preset(args.preset)
    status, folder, error = registry.local_copy_status(info.name)
    print(f"name: {info.name}")
    print(f"class: {info.class_name}")
    print(f"description: {info.description}")
    print(f"hub: {info.handle or 'not published (ships in the repository weights/ folder)'}")
    print(f"local copy: {status}" + (f" ({folder})" if folder else "") + (f": {error}" if error else ""))
    print("metadata:")
    _print_mapping(dict(info.metadata), "  ")
    if status == "verified":
        print("metadata.json of the local copy:")
        _print_mapping(json.loads((folder / preset_io.METADATA_FILE).read_text(encoding="utf-8")), "  ")
    print("sha256:")
    _print_mapping(dict(info.sha256), "  ")
    return 0


def run_verify(args):
    allowed_root = None
    if args.preset.startswith(hub.HF_PREFIX):
        folder, _, expected = _hub_folder(args.preset)
        allowed_root = folder.parents[1]
        label = "the registry" if expected else "its metadata.json"
    elif _is_folder_argument(args.preset):
        folder = Path(args.preset).expanduser()
        expected = None
        label = "its metadata.json"
    else:
        info = registry.get_preset(args.preset)
        folder = registry.find_local_copy(info.name)
        if folder is None:
            dirs = " or ".join(str(d / info.name) for d in registry.local_copy_dirs())
            raise FileNotFoundError(f"preset {info.name!r} has no local copy ({dirs}) to verify")
        expected = dict(info.sha256)
        label = "the registry"
    preset_io.verify_preset(folder, expected, allowed_root=allowed_root)
    hashed = preset_io.PRESET_FILES if expected else preset_io.HASHED_FILES
    for name in hashed:
        print(f"ok  {name}  {preset_io.sha256_file(folder / name)}")
    print(f"{folder}: all files match the sha256 in {label}")
    return 0


def run_push(args):
    folder = Path(args.folder).expanduser()
    preset_io.verify_preset(folder)  # before any connection
    info = hub.push_to_hub(folder, args.repo, revision=args.revision, private=args.private,
                           commit_message=args.message)
    repo_id, _ = hub.parse_hf_handle(args.repo if args.repo.startswith(hub.HF_PREFIX) else hub.HF_PREFIX + args.repo)
    print(f"pushed {folder} to hf://{repo_id}: commit {info.oid}")
    print(f"load it with: keras_rmz.presets.load_preset(\"hf://{repo_id}@{info.oid}\")")
    print("registry entry (keras_rmz/models/<model>/<model>_presets.py):")
    entry = registry.registry_entry_for(folder, repo_id, info.oid)
    print(registry.format_registry_entry(args.name or folder.name, entry))
    return 0


def run_entry(args):
    folder = Path(args.folder).expanduser()
    name = args.name or folder.name
    entry = registry.registry_entry_for(folder, args.hub, args.revision, description=args.description)
    print(registry.format_registry_entry(name, entry))
    return 0
