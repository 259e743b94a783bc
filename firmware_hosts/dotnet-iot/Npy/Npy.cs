// NumPy .npy version 1.0/2.0 reader and 1.0 writer: little-endian, C order (what docs/bundle-internals.md fixes).
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Edgepack.Host.Ort;

namespace Edgepack.Host.Npy
{
    public static class NpyFile
    {
        static readonly byte[] Magic = { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' };

        public static TensorData Read(string path)
        {
            byte[] all;
            try { all = File.ReadAllBytes(path); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new HostError("cannot read " + path + ": " + e.Message, "pass an existing .npy file");
            }
            for (int i = 0; i < Magic.Length; i++)
                if (all.Length < 10 || all[i] != Magic[i])
                    throw new HostError(path + " is not a .npy file", "save it with numpy.save");
            int major = all[6];
            int headerLen, offset;
            if (major == 1) { headerLen = all[8] | (all[9] << 8); offset = 10; }
            else if (major == 2 || major == 3)
            {
                headerLen = BitConverter.ToInt32(all, 8);
                offset = 12;
            }
            else throw new HostError(path + ": unsupported .npy version " + major);
            string header = Encoding.ASCII.GetString(all, offset, headerLen);
            string descr = Field(header, "descr", path);
            string fortran = Field(header, "fortran_order", path);
            string shapeText = Field(header, "shape", path);
            if (fortran.StartsWith("True", StringComparison.Ordinal))
                throw new HostError(path + " is in Fortran order", "save a C-contiguous array (numpy.ascontiguousarray)");
            ElementType t = FromDescr(descr, path);
            long[] shape = ParseShape(shapeText, path);
            int dataStart = offset + headerLen;
            long nbytes = TensorData.ElementCount(shape) * ElementTypes.Size(t);
            if (all.Length - dataStart != nbytes)
                throw new HostError(path + ": header says shape " + TensorData.ShapeString(shape) + " (" + nbytes +
                    " bytes) but the file holds " + (all.Length - dataStart), "rewrite it with numpy.save");
            var data = new byte[nbytes];
            Buffer.BlockCopy(all, dataStart, data, 0, (int)nbytes);
            return new TensorData(t, shape, data);
        }

        static string Field(string header, string key, string path)
        {
            string k = "'" + key + "':";
            int i = header.IndexOf(k, StringComparison.Ordinal);
            if (i < 0) throw new HostError(path + ": .npy header has no " + key);
            string rest = header.Substring(i + k.Length).TrimStart();
            if (rest.StartsWith("(", StringComparison.Ordinal)) return rest.Substring(0, rest.IndexOf(')') + 1);
            if (rest.StartsWith("'", StringComparison.Ordinal)) return rest.Substring(1, rest.IndexOf('\'', 1) - 1);
            return rest;
        }

        static ElementType FromDescr(string d, string path)
        {
            if (d.Length >= 2 && d[0] == '>' && d.Substring(1) != "u1" && d.Substring(1) != "i1" && d.Substring(1) != "b1")
                throw new HostError(path + " is big-endian (" + d + ")", "save it little-endian");
            string code = d.TrimStart('<', '|', '=');
            switch (code)
            {
                case "f4": return ElementType.Float;
                case "f2": return ElementType.Float16;
                case "f8": return ElementType.Double;
                case "i8": return ElementType.Int64;
                case "i4": return ElementType.Int32;
                case "i2": return ElementType.Int16;
                case "i1": return ElementType.Int8;
                case "u1": return ElementType.UInt8;
                case "u2": return ElementType.UInt16;
                case "u4": return ElementType.UInt32;
                case "u8": return ElementType.UInt64;
                case "b1": return ElementType.Bool;
                default: throw new HostError(path + ": dtype '" + d + "' is not supported",
                    "use float32, float16, int64, int32, int8, uint8 or bool");
            }
        }

        static string Descr(ElementType t)
        {
            switch (t)
            {
                case ElementType.Float: return "<f4";
                case ElementType.Float16: return "<f2";
                case ElementType.Double: return "<f8";
                case ElementType.Int64: return "<i8";
                case ElementType.Int32: return "<i4";
                case ElementType.Int16: return "<i2";
                case ElementType.Int8: return "|i1";
                case ElementType.UInt8: return "|u1";
                case ElementType.UInt16: return "<u2";
                case ElementType.UInt32: return "<u4";
                case ElementType.UInt64: return "<u8";
                case ElementType.Bool: return "|b1";
                default: throw new HostError("cannot write " + ElementTypes.Name(t) + " to .npy");
            }
        }

        static long[] ParseShape(string s, string path)
        {
            var dims = new List<long>();
            foreach (string part in s.Trim('(', ')').Split(','))
            {
                string p = part.Trim();
                if (p.Length == 0) continue;
                long v;
                if (!long.TryParse(p.TrimEnd('L'), out v) || v < 0) throw new HostError(path + ": bad shape " + s);
                dims.Add(v);
            }
            return dims.ToArray();
        }

        public static void Write(string path, TensorData t)
        {
            var shape = new StringBuilder("(");
            for (int i = 0; i < t.Shape.Length; i++)
            {
                shape.Append(t.Shape[i]);
                if (t.Shape.Length == 1 || i < t.Shape.Length - 1) shape.Append(t.Shape.Length == 1 ? "," : ", ");
            }
            shape.Append(')');
            string header = "{'descr': '" + Descr(t.Type) + "', 'fortran_order': False, 'shape': " + shape + ", }";
            // Pad so that the data starts on a 64-byte boundary, with a final newline, as numpy does.
            int total = 10 + header.Length + 1;
            int pad = (64 - total % 64) % 64;
            header = header + new string(' ', pad) + "\n";
            using (var fs = new FileStream(path, FileMode.Create, FileAccess.Write))
            {
                fs.Write(Magic, 0, Magic.Length);
                fs.WriteByte(1);
                fs.WriteByte(0);
                fs.WriteByte((byte)(header.Length & 0xff));
                fs.WriteByte((byte)(header.Length >> 8));
                byte[] hb = Encoding.ASCII.GetBytes(header);
                fs.Write(hb, 0, hb.Length);
                fs.Write(t.Data, 0, t.Data.Length);
            }
        }
    }
}
