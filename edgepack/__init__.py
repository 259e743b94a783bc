"""edgepack: package Hugging Face / ONNX models for edge devices, deploy, and check them on the device."""

__version__ = "0.1.0"
