"""Model export (needs the ``export`` extra: ``pip install -e ".[export]"``).

    from fluid.export import export_onnx
    sidecar = export_onnx(classifier, "model.onnx", part="full")   # also writes model.onnx.json

See docs/serving.md ("ONNX export").
"""

from fluid.export.onnx import (
    EXPORT_PARTS,
    ExportError,
    export_head,
    export_onnx,
    sidecar_path,
)

__all__ = ["EXPORT_PARTS", "ExportError", "export_head", "export_onnx", "sidecar_path"]
