"""UniKE records: schema, validation, loading and writing, cloze templates; and SynthWorld."""

from .cloze import ClozeTemplate, SubjectNotFoundError, find_subject, make_template
from .io import DataFileError, LoadResult, load_unike, write_unike
from .schema import CATEGORIES, SOURCES, STAGE_FIELDS, STAGE_KEYS, Record, Stage
from .validate import DataValidationError, Problem, check_record, validate_records

__all__ = [
    "CATEGORIES", "ClozeTemplate", "DataFileError", "DataValidationError", "LoadResult", "Problem",
    "Record", "SOURCES", "STAGE_FIELDS", "STAGE_KEYS", "Stage", "SubjectNotFoundError", "check_record",
    "find_subject", "load_unike", "make_template", "validate_records", "write_unike",
]
