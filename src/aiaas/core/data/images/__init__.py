"""Image datasets: an uploaded archive of PNG, JPEG or DICOM files read into the table of the
image contract (docs/guides/images.md).

`archives` reads an archive's members under its limits, `labels` finds each image's label,
`dicom` turns a DICOM file into pixels and kept tags, and `ingest` writes the table.
"""
