using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Edgepack.Host.Ort
{
    /// <summary>ONNX tensor element types (ONNXTensorElementDataType in onnxruntime_c_api.h).</summary>
    public enum ElementType
    {
        Undefined = 0, Float = 1, UInt8 = 2, Int8 = 3, UInt16 = 4, Int16 = 5, Int32 = 6, Int64 = 7,
        String = 8, Bool = 9, Float16 = 10, Double = 11, UInt32 = 12, UInt64 = 13,
    }

    public static class ElementTypes
    {
        // The types this host moves in and out of ORT; anything else is reported by name.
        public static int Size(ElementType t)
        {
            switch (t)
            {
                case ElementType.Float: case ElementType.Int32: case ElementType.UInt32: return 4;
                case ElementType.Int64: case ElementType.Double: case ElementType.UInt64: return 8;
                case ElementType.Float16: case ElementType.Int16: case ElementType.UInt16: return 2;
                case ElementType.UInt8: case ElementType.Int8: case ElementType.Bool: return 1;
                default: throw new HostError("tensor element type " + Name(t) + " is not supported by this host",
                    "use float32, float16, int64, int32, int8, uint8 or bool");
            }
        }

        static readonly string[] names = {
            "undefined", "float32", "uint8", "int8", "uint16", "int16", "int32", "int64",
            "string", "bool", "float16", "float64", "uint32", "uint64",
        };

        public static string Name(ElementType t)
        {
            int i = (int)t;
            return i >= 0 && i < names.Length ? names[i] : "type#" + i;
        }

        public static ElementType Parse(string name)
        {
            for (int i = 0; i < names.Length; i++)
                if (names[i] == name) return (ElementType)i;
            if (name == "float") return ElementType.Float;
            if (name == "double") return ElementType.Double;
            throw new HostError("unknown dtype '" + name + "'", "use float32, float16, int64, int32, int8, uint8 or bool");
        }
    }

    /// <summary>A dense tensor held in managed memory (row-major bytes), the currency between npy, JSON and ORT.</summary>
    public sealed class TensorData
    {
        public readonly ElementType Type;
        public readonly long[] Shape;
        public readonly byte[] Data;

        public TensorData(ElementType type, long[] shape, byte[] data)
        {
            Type = type;
            Shape = shape;
            Data = data;
            long n = ElementCount(shape) * ElementTypes.Size(type);
            if (n != data.Length)
                throw new HostError("tensor data has " + data.Length + " bytes but shape " + ShapeString(shape) + " of " +
                    ElementTypes.Name(type) + " needs " + n);
        }

        public static long ElementCount(long[] shape)
        {
            long n = 1;
            foreach (long d in shape) n *= d;
            return n;
        }

        public long Count { get { return ElementCount(Shape); } }

        public static string ShapeString(long[] shape)
        {
            return "[" + string.Join(", ", Array.ConvertAll(shape, d => d.ToString())) + "]";
        }

        public float[] ToFloats()
        {
            long n = Count;
            var f = new float[n];
            switch (Type)
            {
                case ElementType.Float: Buffer.BlockCopy(Data, 0, f, 0, Data.Length); break;
                case ElementType.Float16:
                    for (long i = 0; i < n; i++) f[i] = HalfFloat.ToFloat(BitConverter.ToUInt16(Data, (int)(i * 2)));
                    break;
                case ElementType.Double:
                    for (long i = 0; i < n; i++) f[i] = (float)BitConverter.ToDouble(Data, (int)(i * 8));
                    break;
                case ElementType.Int64:
                    for (long i = 0; i < n; i++) f[i] = BitConverter.ToInt64(Data, (int)(i * 8));
                    break;
                case ElementType.Int32:
                    for (long i = 0; i < n; i++) f[i] = BitConverter.ToInt32(Data, (int)(i * 4));
                    break;
                case ElementType.Int8:
                    for (long i = 0; i < n; i++) f[i] = (sbyte)Data[i];
                    break;
                case ElementType.UInt8: case ElementType.Bool:
                    for (long i = 0; i < n; i++) f[i] = Data[i];
                    break;
                default: throw new HostError("cannot read " + ElementTypes.Name(Type) + " values as numbers");
            }
            return f;
        }

        public static TensorData FromFloats(float[] v, long[] shape)
        {
            var b = new byte[v.Length * 4];
            Buffer.BlockCopy(v, 0, b, 0, b.Length);
            return new TensorData(ElementType.Float, shape, b);
        }

        public static TensorData FromInt64(long[] v, long[] shape)
        {
            var b = new byte[v.Length * 8];
            Buffer.BlockCopy(v, 0, b, 0, b.Length);
            return new TensorData(ElementType.Int64, shape, b);
        }

        /// <summary>Builds a tensor from JSON numbers (serve's "run" op), converting to the requested type.</summary>
        public static TensorData FromDoubles(ElementType t, long[] shape, IList<object> values)
        {
            long n = ElementCount(shape);
            if (values.Count != n)
                throw new HostError("data has " + values.Count + " values but shape " + ShapeString(shape) + " needs " + n);
            int size = ElementTypes.Size(t);
            var b = new byte[n * size];
            for (int i = 0; i < n; i++)
            {
                object o = values[i];
                double d;
                if (o is double) d = (double)o;
                else if (o is bool) d = (bool)o ? 1 : 0;
                else throw new HostError("data[" + i + "] is not a number");
                byte[] one;
                switch (t)
                {
                    case ElementType.Float: one = BitConverter.GetBytes((float)d); break;
                    case ElementType.Double: one = BitConverter.GetBytes(d); break;
                    case ElementType.Float16: one = BitConverter.GetBytes(HalfFloat.FromFloat((float)d)); break;
                    case ElementType.Int64: one = BitConverter.GetBytes((long)d); break;
                    case ElementType.Int32: one = BitConverter.GetBytes((int)d); break;
                    case ElementType.Int16: one = BitConverter.GetBytes((short)d); break;
                    case ElementType.UInt16: one = BitConverter.GetBytes((ushort)d); break;
                    case ElementType.Int8: one = new byte[] { unchecked((byte)(sbyte)d) }; break;
                    case ElementType.UInt8: one = new byte[] { (byte)d }; break;
                    case ElementType.Bool: one = new byte[] { (byte)(d != 0 ? 1 : 0) }; break;
                    default: throw new HostError("cannot build a " + ElementTypes.Name(t) + " tensor from JSON");
                }
                Buffer.BlockCopy(one, 0, b, i * size, size);
            }
            return new TensorData(t, shape, b);
        }

        /// <summary>Values as JSON-ready numbers (serve's responses).</summary>
        public List<object> ToJsonValues()
        {
            var list = new List<object>((int)Count);
            if (Type == ElementType.Int64)
                for (int i = 0; i < Count; i++) list.Add(BitConverter.ToInt64(Data, i * 8));
            else if (Type == ElementType.Bool)
                for (int i = 0; i < Count; i++) list.Add(Data[i] != 0);
            else
                foreach (float f in ToFloats()) list.Add((double)f);
            return list;
        }
    }

    /// <summary>IEEE 754 binary16 conversion (no System.Half in Mono 6.8).</summary>
    public static class HalfFloat
    {
        public static float ToFloat(ushort h)
        {
            int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
            float v;
            if (exp == 0) v = (float)(mant * Math.Pow(2, -24));
            else if (exp == 31) v = mant == 0 ? float.PositiveInfinity : float.NaN;
            else v = (float)((1 + mant / 1024.0) * Math.Pow(2, exp - 15));
            return sign == 1 ? -v : v;
        }

        public static ushort FromFloat(float f)
        {
            uint x = (uint)BitConverter.ToInt32(BitConverter.GetBytes(f), 0);
            uint sign = (x >> 16) & 0x8000;
            int exp = (int)((x >> 23) & 0xff) - 127 + 15;
            uint mant = x & 0x7fffff;
            if (((x >> 23) & 0xff) == 0xff) return (ushort)(sign | 0x7c00 | (mant != 0 ? 0x200u : 0u));
            if (exp >= 31) return (ushort)(sign | 0x7c00);
            if (exp <= 0)
            {
                if (exp < -10) return (ushort)sign;
                mant |= 0x800000;
                int shift = 14 - exp;
                uint half = mant >> shift;
                uint rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
                if (rem > mid || (rem == mid && (half & 1) != 0)) half++;
                return (ushort)(sign | half);
            }
            uint h = sign | ((uint)exp << 10) | (mant >> 13);
            uint r = mant & 0x1fff;
            if (r > 0x1000 || (r == 0x1000 && (h & 1) != 0)) h++;
            return (ushort)h;
        }
    }
}
