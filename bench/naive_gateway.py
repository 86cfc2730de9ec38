"""The naive pattern the issue measures against, kept here only as the baseline.

Deliberately what not to do: the handler decodes the upload at full
resolution, resizes it with LANCZOS, sends the pixels to TF Serving's REST
predict as a JSON list of numbers (integers, since the signature takes uint8)
with a blocking urllib call made on the event loop, and ranks the top 5 in
Python. Start it with `python -m bench.naive_gateway --port P --predict-url URL`.
"""

import argparse
import io
import json
import urllib.request
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

IMAGE_SIZE = (224, 224)


def create_app(predict_url: str) -> FastAPI:
    """One blocking predict route and a health route."""
    app = FastAPI(title="naive gateway (benchmark baseline)")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = await file.read()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image = image.resize(IMAGE_SIZE, Image.Resampling.LANCZOS)
        body = json.dumps({"instances": [np.asarray(image).tolist()]}).encode()
        request = urllib.request.Request(  # noqa: S310  (a fixed http URL from the command line)
            predict_url, data=body, headers={"Content-Type": "application/json"}
        )
        # The naive part: this blocks the event loop for the whole round trip.
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310, ASYNC210
            scores = json.loads(response.read())["predictions"][0]
        top = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:5]
        return {"predictions": [{"class_id": index, "score": scores[index]} for index in top]}

    return app


def main() -> None:
    """Serve the naive gateway on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive_gateway")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--predict-url", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.predict_url), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
