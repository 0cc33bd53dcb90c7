"""Data audit: duplicates and near-duplicates (and the split leakage and label conflicts they cause),
suspect labels and image-quality flags, over the exact splits a training run would use.

    from skinacc.audit import audit_dataset, write_audit
    report, tables = audit_dataset(load_skin_dataset(args), workers=16)
    write_audit(report, tables, "outputs/audit")

Optional dependencies (``pip install 'skinacc[audit]'``): faiss-cpu (the hash index), cleanlab
(suspect labels), cleanvision (quality flags).
"""

from skinacc.audit.core import audit_dataset, dedupe_groups
from skinacc.audit.duplicates import DuplicatePair, aligned_ncc, find_duplicates, union_groups
from skinacc.audit.fingerprints import Fingerprints, dihedral, dihedral_hashes, fingerprint, fingerprint_all
from skinacc.audit.outputs import summary_text, write_audit

__all__ = [
    "DuplicatePair",
    "Fingerprints",
    "aligned_ncc",
    "audit_dataset",
    "dedupe_groups",
    "dihedral",
    "dihedral_hashes",
    "find_duplicates",
    "fingerprint",
    "fingerprint_all",
    "summary_text",
    "union_groups",
    "write_audit",
]
