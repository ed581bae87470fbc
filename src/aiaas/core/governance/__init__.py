"""Governance: keeping the instance's data safe, recoverable and tidy. Beneath every other domain.

- `crypto`: the master key, and AES-256-GCM sealing of artifacts in chunks;
- `vault`: each project's data key, and the only way services store and open artifacts;
- `sealed_values`: a row's field sealed with its project's data key, bound to its row;
- `garbage`: removing the artifacts that nothing live refers to;
- `pending_artifacts`: deleting what an operation stored when it fails before recording it;
- `backup`: one archive of every table and artifact, verified, and restored all or nothing;
- `backup_archive`: that archive's members and manifest, and verifying one against the other;
- `backup_sealing`: how that archive is encrypted and its manifest authenticated.

The domain owns the table `data_keys`. It knows the other domains' tables only as a backup or
the garbage collector must: by name, never through their code.
"""

from aiaas.core.governance.backup import Manifest, create_backup, restore_backup, verify_archive
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.governance.garbage import Collection, collect_garbage
from aiaas.core.governance.pending_artifacts import PendingArtifacts, artifacts_kept_on_success
from aiaas.core.governance.vault import VAULT, Vault

__all__ = [
    "VAULT",
    "Collection",
    "Manifest",
    "MasterKey",
    "PendingArtifacts",
    "Vault",
    "artifacts_kept_on_success",
    "collect_garbage",
    "create_backup",
    "restore_backup",
    "verify_archive",
]
