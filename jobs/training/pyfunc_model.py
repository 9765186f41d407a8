"""The MLflow pyfunc of a registered LTCHM version, defined by code ("models from code").

``mlflow.pyfunc.load_model("models:/ltchm-lambda512@champion")`` executes this file and
loads the codec checkpoint artifact with ``torch.load(weights_only=True)``: nothing is
unpickled. ``predict`` takes a list of image file paths and returns, per image, the size of
its ``.ltc`` file in bytes and its bits per pixel; for coding files use ``ltchm.codec``
(``ltchm.codec.load_model("models:/...")`` loads the same checkpoint).
"""

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class LtchmCodec(PythonModel):
    def load_context(self, context) -> None:
        from ltchm.codec import ImageCodec, load_checkpoint

        self.codec = ImageCodec(load_checkpoint(context.artifacts["checkpoint"]))

    # A DataFrame hint: MLflow infers no schema from it (none fits "paths, as a list or a
    # column") and, unlike no hint, does not warn about it at every logging and loading.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from ltchm.codec import bits_per_pixel
        from ltchm.imageio import read_image

        paths = list(model_input["path"]) if hasattr(model_input, "columns") else model_input
        out = []
        for path in paths:
            x = read_image(path)
            n = len(self.codec.encode(x))
            out.append({"path": str(path), "bytes": n, "bpp": bits_per_pixel(n, *x.shape[-2:])})
        return out


set_model(LtchmCodec())
