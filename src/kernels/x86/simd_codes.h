// Window codes in the packed layout of lowbit/kernels.h for the SIMD kernels over a vector traits
// class V: a vector's two bit planes, stores and loads of whole bytes of codes, a bit buffer that
// writes and reads them in element order (rows of any length), and the code sinks of the
// per-channel forward. Nested in simd_body.h (same namespace, same includes).

// The two planes (lowbit::kernels::packed_code_offset) of the window codes of [lo, hi] of a vector
// x, element k at bit k: plane 0 = in or above, plane 1 = below or above.
template <class V>
inline void packed_planes(typename V::reg x, typename V::reg lo, typename V::reg hi, uint32_t* p0,
                          uint32_t* p1) {
  const uint32_t in = V::bits(V::and_mask(V::le(lo, x), V::le(x, hi)));
  const uint32_t below = V::bits(V::lt(x, lo));
  const uint32_t above = V::bits(V::and_mask(V::lt(hi, x), V::le(lo, x)));  // not below, as above
  *p0 = in | above;
  *p1 = below | above;
}

// The planes of one element's window code (detail::window_code), at bit 0.
inline void code_planes(uint8_t c, uint32_t* p0, uint32_t* p1) {
  *p0 = (c & (detail::kCodeIn | detail::kCodeAbove)) != 0 ? 1u : 0u;
  *p1 = (c & (detail::kCodeBelow | detail::kCodeAbove)) != 0 ? 1u : 0u;
}

// The masks of a vector's elements from the planes of their packed codes.
template <class V>
inline void masks_from_planes(uint32_t p0, uint32_t p1, typename V::mask* in,
                              typename V::mask* below, typename V::mask* above) {
  *in = V::from_bits(p0 & ~p1);
  *below = V::from_bits(p1 & ~p0);
  *above = V::from_bits(p0 & p1);
}

// The packed window codes of the vector of elements from i (i % V::W == 0: whole bytes of 8
// elements).
template <class V>
inline void store_packed_codes(uint8_t* code, int64_t i, typename V::reg x, typename V::reg lo,
                               typename V::reg hi) {
  uint32_t p0, p1;
  packed_planes<V>(x, lo, hi, &p0, &p1);
  if constexpr (V::W == 16) {  // a whole group: one little-endian word (x86)
    const uint32_t w = p0 | (p1 << 16);
    std::memcpy(code + 4 * (i / 16), &w, sizeof w);
  } else {
    for (int k = 0; k < V::W / 8; ++k) {
      uint8_t* h = code + lowbit::kernels::packed_code_offset(i + 8 * k);
      h[0] = static_cast<uint8_t>(p0 >> (8 * k));
      h[2] = static_cast<uint8_t>(p1 >> (8 * k));
    }
  }
}

// The masks of the vector of elements from i (i % V::W == 0) from packed window codes.
template <class V>
inline void load_packed_masks(const uint8_t* code, int64_t i, typename V::mask* in,
                              typename V::mask* below, typename V::mask* above) {
  uint32_t p0 = 0, p1 = 0;
  if constexpr (V::W == 16) {  // a whole group: one little-endian word (x86)
    uint32_t w;
    std::memcpy(&w, code + 4 * (i / 16), sizeof w);
    p0 = w & 0xffffu;
    p1 = w >> 16;
  } else {
    for (int k = 0; k < V::W / 8; ++k) {
      const uint8_t* h = code + lowbit::kernels::packed_code_offset(i + 8 * k);
      p0 |= static_cast<uint32_t>(h[0]) << (8 * k);
      p1 |= static_cast<uint32_t>(h[2]) << (8 * k);
    }
  }
  masks_from_planes<V>(p0, p1, in, below, above);
}

// Packed window codes written in element order, a vector's or one element's bits at a time (the
// per-channel kernels walk rows of any length: their vectors need not start a byte of codes). Each
// group's 4 bytes are stored as one little-endian word (x86) once its 16 elements are in; finish()
// stores the group begun last, its bits past the end 0.
class PackedCodeWriter {
 public:
  explicit PackedCodeWriter(uint8_t* code) : code_(code) {}
  // The planes of the next `bits` elements (bits <= 16; no bit set at or above `bits`).
  void put(uint32_t p0, uint32_t p1, int bits) {
    p0_ |= static_cast<uint64_t>(p0) << n_;
    p1_ |= static_cast<uint64_t>(p1) << n_;
    n_ += bits;
    while (n_ >= 16) {
      store();
      n_ -= 16;
    }
  }
  void finish() {
    if (n_ > 0) store();
    n_ = 0;
  }

 private:
  void store() {
    const uint32_t w = static_cast<uint32_t>(p0_ & 0xffffu) | static_cast<uint32_t>(p1_ & 0xffffu)
                                                                  << 16;
    std::memcpy(code_, &w, sizeof w);
    code_ += 4;
    p0_ >>= 16;
    p1_ >>= 16;
  }
  uint8_t* code_;
  uint64_t p0_ = 0, p1_ = 0;
  int n_ = 0;  // elements held, < 16 between calls
};

// Packed window codes read in element order, as PackedCodeWriter writes them; never reads past the
// group of the last element taken.
class PackedCodeReader {
 public:
  explicit PackedCodeReader(const uint8_t* code) : code_(code) {}
  // The planes of the next `bits` elements (bits <= 16), element k at bit k.
  void take(int bits, uint32_t* p0, uint32_t* p1) {
    if (n_ < bits) {  // one group is enough: n_ + 16 >= bits
      uint32_t w;
      std::memcpy(&w, code_, sizeof w);
      code_ += 4;
      p0_ |= static_cast<uint64_t>(w & 0xffffu) << n_;
      p1_ |= static_cast<uint64_t>(w >> 16) << n_;
      n_ += 16;
    }
    const uint64_t m = (uint64_t{1} << bits) - 1;
    *p0 = static_cast<uint32_t>(p0_ & m);
    *p1 = static_cast<uint32_t>(p1_ & m);
    p0_ >>= bits;
    p1_ >>= bits;
    n_ -= bits;
  }

 private:
  const uint8_t* code_;
  uint64_t p0_ = 0, p1_ = 0;
  int n_ = 0;
};

// Where the per-channel forward puts its window codes: nowhere, in place (every row is whole
// vectors, so each vector starts a byte of codes, as per tensor), or through the writer in element
// order (rows of any length).
template <class V>
struct NoCodes {
  static constexpr bool kWrites = false;
  void vec(int64_t, typename V::reg, typename V::reg, typename V::reg) {}
  void one(uint8_t) {}
  void done(int64_t) {}
};

template <class V>
struct InPlaceCodes {
  static constexpr bool kWrites = true;
  uint8_t* code;
  void vec(int64_t k, typename V::reg x, typename V::reg lo, typename V::reg hi) {
    store_packed_codes<V>(code, k, x, lo, hi);
  }
  void one(uint8_t) {}    // never called: no row has a scalar tail
  void done(int64_t n) {  // the rest of a group begun by the last vector (8 lanes), written as 0
    for (int64_t i = n; i % 16 != 0; i += 8) {
      uint8_t* h = code + lowbit::kernels::packed_code_offset(i);
      h[0] = 0;
      h[2] = 0;
    }
  }
};

template <class V>
struct StreamedCodes {
  static constexpr bool kWrites = true;
  PackedCodeWriter writer;
  void vec(int64_t, typename V::reg x, typename V::reg lo, typename V::reg hi) {
    uint32_t p0, p1;
    packed_planes<V>(x, lo, hi, &p0, &p1);
    writer.put(p0, p1, V::W);
  }
  void one(uint8_t c) {
    uint32_t p0, p1;
    code_planes(c, &p0, &p1);
    writer.put(p0, p1, 1);
  }
  void done(int64_t) { writer.finish(); }
};
