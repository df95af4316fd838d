from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

ONNX = ["onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.18"]

setup(
    name="edtalk",
    version="0.1.0",
    description="EDTalk (ECCV 2024): efficient disentanglement for emotional talking-head synthesis",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",  # the code; the released EDTalk weights carry their authors' non-commercial terms
    license_files=["LICENSE"],
    keywords=["talking head", "face animation", "lip sync", "emotion", "disentanglement", "pytorch"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: OS Independent",
        "Intended Audience :: Science/Research",
        "Topic :: Multimedia :: Video",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.9",
    packages=find_packages(include=["edtalk", "edtalk.*"]),
    package_data={"edtalk.data": ["splits/*.json", "splits/README.md"]},
    install_requires=requirements,
    # import-linter: tests/test_import_contracts.py checks .importlinter (2.6 has acyclic_siblings)
    # onnx: `edtalk export-onnx` (torch's dynamo exporter needs onnxscript) and `generate --engine onnx`
    # (onnxruntime; onnxruntime-gpu instead for the CUDA provider)
    extras_require={"test": ["pytest>=7", "import-linter>=2.6", *ONNX], "mediapipe": ["mediapipe"],
                    "face-alignment": ["face-alignment"], "face-sr": ["gfpgan"], "onnx": ONNX},
    entry_points={"console_scripts": ["edtalk=edtalk.cli:main"]},
)
