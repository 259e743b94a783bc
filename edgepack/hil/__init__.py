"""edgepack.hil"""
