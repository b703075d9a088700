// The batched trainer's compiled epoch (see _native.py): forward pass, softmax cross-entropy or
// squared error, backward pass and Adam for each child of a group, one child after another.
//
// Each child is computed at its own widths inside the group's padded buffers, so padding costs
// nothing and a child's numbers do not depend on its batch-mates. Activations are stored as
// (units, columns) with the data rows along the columns, so every inner loop runs over contiguous
// rows in vectors of 16 floats; the column count is padded to a multiple of 16 and padded
// columns never reach a loss, a statistic or a gradient (they are masked out by selection, so a
// non-finite value there cannot leak either).
//
// Written with GCC's vector extensions: the compiler lowers them to the machine's widest
// vectors (-march=native) or splits them into narrower ones.

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace {

constexpr int V = 16;
typedef float vf __attribute__((vector_size(V * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(V * sizeof(int32_t))));

inline vf splat(float x) { return x - vf{}; }  // not x + vf{}: adding 0.0f is not an identity (-0.0f)
inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf select(vi mask, vf a, vf b) { return mask ? a : b; }
inline vi iota() {
  vi v;
  for (int i = 0; i < V; ++i) v[i] = i;
  return v;
}
inline float hsum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < V; ++i) s += v[i];
  return s;
}

// c0 + x (c1 + x (c2 + ...)): a polynomial's coefficients from the constant term up.
inline vf horner(vf, float c) { return splat(c); }
template <typename... Higher>
inline vf horner(vf x, float c, Higher... higher) {
  return c + x * horner(x, higher...);
}

// exp(x) to about one unit in the last place: x = n ln2 + r with |r| <= ln2 / 2, a degree-7
// Taylor polynomial for exp(r), times 2^n built in the exponent bits. Clamped to the range where
// 2^n is a normal float; NaN stays NaN (through the polynomial).
inline vf vexp(vf x) {
  x = select(x < -87.0f, splat(-87.0f), x);
  x = select(x > 88.0f, splat(88.0f), x);
  const vf shifter = splat(12582912.0f);  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  vf n = (x * 1.44269504088896341f + shifter) - shifter;
  vf r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
  vf p = horner(r, 1.0f, 1.0f, 0.5f, 1.0f / 6.0f, 1.0f / 24.0f, 1.0f / 120.0f, 1.0f / 720.0f, 1.0f / 5040.0f);
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// log(s) for normal s > 0: s = 2^e f with f in [sqrt(1/2), sqrt(2)), log f = 2 atanh(u) with
// u = (f - 1) / (f + 1), |u| <= 0.172, as an odd series to u^11.
inline vf vlog(vf s) {
  vi bits;
  std::memcpy(&bits, &s, sizeof bits);
  vi e = ((bits >> 23) & 0xff) - 127;
  vi mantissa = (bits & 0x7fffff) | 0x3f800000;
  vf f;
  std::memcpy(&f, &mantissa, sizeof f);
  vi big = f > 1.41421356f;
  f = select(big, f * 0.5f, f);
  e = e - big;  // big is -1 where true
  vf u = (f - 1.0f) / (f + 1.0f);
  vf u2 = u * u;
  vf p = horner(u2, 1.0f, 1.0f / 3.0f, 1.0f / 5.0f, 1.0f / 7.0f, 1.0f / 9.0f, 1.0f / 11.0f);
  return 2.0f * u * p + __builtin_convertvector(e, vf) * 0.693147180559945309f;
}

enum Mode { NONE = 0, RELU = 1, TANH = 2, RELU_BACK = 3, TANH_BACK = 4 };

// What a layer's product is followed by, on one vector of columns starting at column c.
// Forward: the activation (relu keeps NaN, as torch's does; tanh = 2 / (1 + exp(-2z)) - 1).
// Backward: dL/dz from dL/dh, given the layer's output h; columns >= limit become exactly 0.
inline vf epilogue(vf a, int mode, const float* gate, int c, int limit) {
  switch (mode) {
    case RELU:
      return select(a < 0.0f, splat(0.0f), a);
    case TANH:
      return 2.0f / (1.0f + vexp(-2.0f * a)) - 1.0f;
    case RELU_BACK:
      return select((load(gate) > 0.0f) & (iota() + c < limit), a, splat(0.0f));
    case TANH_BACK: {
      vf h = load(gate);
      return select(iota() + c < limit, a * (1.0f - h * h), splat(0.0f));
    }
    default:
      return a;
  }
}

// out[j][c] = bias[j] + sum_k w(j, k) h[k][c] for a block of JB rows and NV vectors of columns,
// then the epilogue; w(j, k) = W[j * wr + k * wc] (the transpose is wr = 1, wc = the row length).
template <int JB, int NV>
void product_block(const float* W, long wr, long wc, const float* bias, const float* h, long ld, int K,
                   float* out, int mode, const float* gate, int j0, int c0, int limit) {
  vf acc[JB][NV];
  for (int j = 0; j < JB; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = splat(bias ? bias[j0 + j] : 0.0f);
  for (int k = 0; k < K; ++k) {
    vf hv[NV];
    for (int v = 0; v < NV; ++v) hv[v] = load(h + k * ld + c0 + v * V);
    for (int j = 0; j < JB; ++j) {
      vf w = splat(W[(j0 + j) * wr + k * wc]);
      for (int v = 0; v < NV; ++v) acc[j][v] += w * hv[v];
    }
  }
  for (int j = 0; j < JB; ++j)
    for (int v = 0; v < NV; ++v) {
      long at = (long)(j0 + j) * ld + c0 + v * V;
      store(out + at, epilogue(acc[j][v], mode, gate ? gate + at : nullptr, c0 + v * V, limit));
    }
}

// f(Block<B>{}, i) over [0, n) in blocks of four, then one block of what is left: the block sizes
// are template arguments, so each block's loops unroll and its accumulators stay in registers.
template <int B>
using Block = std::integral_constant<int, B>;
template <typename F>
void by_fours(int n, F f) {
  int i = 0;
  for (; i + 4 <= n; i += 4) f(Block<4>{}, i);
  switch (n - i) {
    case 3: f(Block<3>{}, i); break;
    case 2: f(Block<2>{}, i); break;
    case 1: f(Block<1>{}, i); break;
    default: break;
  }
}

// out (J rows, ld apart) = w h + bias over `cols` columns (a multiple of V), then the epilogue.
void product(const float* W, long wr, long wc, const float* bias, const float* h, long ld, int J, int K, float* out,
             int mode, const float* gate, int cols, int limit) {
  by_fours(J, [&](auto rows, int j0) {
    by_fours(cols / V, [&](auto vectors, int v0) {
      product_block<rows(), vectors()>(W, wr, wc, bias, h, ld, K, out, mode, gate, j0, v0 * V, limit);
    });
  });
}

// g[j][k] = sum_c d[j][c] h[k][c] over the first `limit` columns (d is 0 beyond them, h is masked).
template <int JB, int KB>
void gradient_block(const float* d, const float* h, long ld, int cols, int limit, float* g, int K, int j0, int k0) {
  vf acc[JB][KB];
  for (int j = 0; j < JB; ++j)
    for (int k = 0; k < KB; ++k) acc[j][k] = splat(0.0f);
  for (int c = 0; c < cols; c += V) {
    vi inside = iota() + c < limit;
    vf hv[KB];
    for (int k = 0; k < KB; ++k) hv[k] = select(inside, load(h + (long)(k0 + k) * ld + c), splat(0.0f));
    for (int j = 0; j < JB; ++j) {
      vf dv = load(d + (long)(j0 + j) * ld + c);
      for (int k = 0; k < KB; ++k) acc[j][k] += dv * hv[k];
    }
  }
  for (int j = 0; j < JB; ++j)
    for (int k = 0; k < KB; ++k) g[(j0 + j) * K + k0 + k] = hsum(acc[j][k]);
}

// g (J x K, dense) = d h^T; gb[j] = sum_c d[j][c].
void gradient(const float* d, const float* h, long ld, int J, int K, int cols, int limit, float* g, float* gb) {
  by_fours(J, [&](auto rows, int j0) {
    by_fours(K, [&](auto columns, int k0) {
      gradient_block<rows(), columns()>(d, h, ld, cols, limit, g, K, j0, k0);
    });
  });
  for (int j = 0; j < J; ++j) {
    vf acc = splat(0.0f);
    for (int c = 0; c < cols; c += V) acc += load(d + (long)j * ld + c);
    gb[j] = hsum(acc);
  }
}

}  // namespace

extern "C" {

// Everything a group's epoch reads and writes; filled once per group by _native.py. Every field is
// 8 bytes wide, so the layout needs no padding rules to agree between C and ctypes.
struct Group {
  int64_t depth;          // hidden layers
  int64_t outputs;        // output units: classes, or 1 for regression
  int64_t regression;     // 1: squared error on one output; 0: softmax cross-entropy
  int64_t n_train;        // training rows: columns [0, n_train)
  int64_t n_val;          // validation rows: columns [n_train, n_train + n_val)
  int64_t cols;           // columns of every buffer: n_train + n_val rounded up to a multiple of 16
  int64_t slots;          // children the buffers hold (a child keeps its slot until the group ends)
  int64_t total;          // parameters of all slots
  const int64_t* sizes;   // depth + 2 padded layer sizes: inputs, hidden widths, outputs
  const int64_t* widths;  // slots x depth: each child's own hidden widths
  const int64_t* acts;    // slots x depth: 1 relu, 2 tanh
  const int64_t* offsets; // 2 (depth + 1): start of each layer's weights, then of its biases, in params
  float* params;          // parameters, then Adam's first and second moments, each `total` long
  float* first;
  float* second;
  const float* x;         // sizes[0] x cols: the inputs, training rows then validation rows
  const float* y;         // cols: class indices (as floats) or regression targets
  float* work;            // slots x work_stride: each child's layer outputs, then dL/dlogits
  int64_t work_stride;
  float* scratch;         // two (widest x cols) delta buffers and one (widest x widest + widest) gradient
  float* stats;           // 4 x slots: loss, correct (regression: squared error), checksum, validation loss
  double lr, beta1, beta2, eps, weight_decay;
  // early stopping, as _Group._validated does it (in double precision, as Python computes it)
  int64_t max_epochs, patience, window, monitor_loss;
  double min_gain;        // what a score must beat the best by (regression's R^2 gain; else 0)
  double sst;             // regression: total sum of squares of the validation targets
  float* ring;            // window x total: the parameters after each of the last `window` epochs
  double* curves;         // slots x 3 x max_epochs: training loss, validation score, validation loss
  double* best;           // slots: best score so far
  int64_t* waited;        // slots: epochs since it improved
  int64_t* event;         // slots: 0 training, 1 stopped, 2 validation outputs not finite, 3 loss not finite
  int64_t* event_epoch;   // slots: the epoch of the event
  int64_t epoch;          // the next epoch to train (0: nothing run yet)
  int64_t validated;      // whether the weights after epoch - 1 have been validated
  int64_t stop;           // set by another thread: return before the next epoch
};

}

namespace {

struct Child {
  const Group* g;
  int64_t slot;
  int in(int layer) const { return layer == 0 ? (int)g->sizes[0] : (int)g->widths[slot * g->depth + layer - 1]; }
  int out(int layer) const { return layer == g->depth ? (int)g->outputs : (int)g->widths[slot * g->depth + layer]; }
  long row(int layer) const { return (long)g->sizes[layer]; }  // the padded row length of a layer's weights
  long weight(int layer) const { return g->offsets[2 * layer] + slot * g->sizes[layer + 1] * g->sizes[layer]; }
  long bias(int layer) const { return g->offsets[2 * layer + 1] + slot * g->sizes[layer + 1]; }
  float* output(int layer) const {  // layer outputs, one after another; then dL/dlogits
    long at = 0;
    for (int l = 0; l < layer; ++l) at += g->sizes[l + 1] * g->cols;
    return g->work + slot * g->work_stride + at;
  }
  const float* input(int layer) const { return layer == 0 ? g->x : output(layer - 1); }
};

// Statistics of the logits and dL/dlogits (0 outside the training rows), for one child.
void loss_and_delta(const Child& child) {
  const Group& g = *child.g;
  const int C = (int)g.outputs, cols = (int)g.cols, n_train = (int)g.n_train, total = (int)(g.n_train + g.n_val);
  const float* z = child.output((int)g.depth);
  float* delta = child.output((int)g.depth + 1);
  const float inv_n = 1.0f / (float)n_train;
  vf loss = splat(0.0f), correct = splat(0.0f), checksum = splat(0.0f), val_loss = splat(0.0f);
  for (int c = 0; c < cols; c += V) {
    vi r = iota() + c;
    vi train = r < n_train, val = (r >= n_train) & (r < total);
    vf y = load(g.y + c);
    if (g.regression) {
      vf out = load(z + c), error = out - y, square = error * error;
      loss += select(train, square, splat(0.0f));
      correct += select(val, square, splat(0.0f));
      checksum += select(val, out, splat(0.0f));
      store(delta + c, select(train, 2.0f * error * inv_n, splat(0.0f)));
      continue;
    }
    vf top = load(z + c), all = top, picked = select(y == 0.0f, top, splat(0.0f));
    vf label = splat(0.0f);
    for (int k = 1; k < C; ++k) {
      vf zk = load(z + (long)k * cols + c);
      vi above = zk > top;  // the first of equal maxima wins, as argmax's does
      label = select(above, splat((float)k), label);
      top = select(above, zk, top);
      all += zk;
      picked += select(y == (float)k, zk, splat(0.0f));
    }
    correct += select(val & (label == y), splat(1.0f), splat(0.0f));
    checksum += select(val, all, splat(0.0f));
    vf sum = splat(0.0f);
    for (int k = 0; k < C; ++k) {  // exp(z_k - max) kept in dL/dlogits until the sum is known
      vf e = vexp(load(z + (long)k * cols + c) - top);
      store(delta + (long)k * cols + c, e);
      sum += e;
    }
    vf nll = top + vlog(sum) - picked;
    loss += select(train, nll, splat(0.0f));
    val_loss += select(val, nll, splat(0.0f));
    vf scale = select(train, inv_n / sum, splat(0.0f));
    for (int k = 0; k < C; ++k) {  // (softmax - one-hot) / n on the training rows, 0 elsewhere
      long at = (long)k * cols + c;
      vf p = load(delta + at) * scale - select(y == (float)k, splat(inv_n), splat(0.0f));
      store(delta + at, select(train, p, splat(0.0f)));
    }
  }
  const long slots = g.slots, at = child.slot;
  g.stats[at] = hsum(loss) * inv_n;
  g.stats[slots + at] = hsum(correct);
  g.stats[2 * slots + at] = hsum(checksum);
  g.stats[3 * slots + at] = g.n_val > 0 ? hsum(val_loss) / (float)g.n_val : 0.0f;
}

void forward(const Child& child) {
  const Group& g = *child.g;
  for (int layer = 0; layer <= g.depth; ++layer) {
    int mode = layer == g.depth ? NONE : (int)g.acts[child.slot * g.depth + layer];
    product(g.params + child.weight(layer), child.row(layer), 1, g.params + child.bias(layer), child.input(layer),
            g.cols, child.out(layer), child.in(layer), child.output(layer), mode, nullptr, (int)g.cols, (int)g.cols);
  }
  loss_and_delta(child);
}

// torch.optim.Adam's update (with L2 weight decay) on n parameters `stride` apart in rows of `width`.
void adam(const Group& g, long at, const float* grad, int rows, int width, long stride, float step_size, float root2) {
  // the constants rounded once from double, as PyTorch passes them
  const float w1 = (float)(1.0 - g.beta1), b2 = (float)g.beta2, w2 = (float)(1.0 - g.beta2);
  const float eps = (float)g.eps, wd = (float)g.weight_decay;
  for (int i = 0; i < rows; ++i) {
    float* p = g.params + at + i * stride;
    float* m = g.first + at + i * stride;
    float* v = g.second + at + i * stride;
    const float* d = grad + (long)i * width;
    for (int k = 0; k < width; ++k) {
      float gk = wd != 0.0f ? d[k] + wd * p[k] : d[k];
      m[k] += w1 * (gk - m[k]);
      v[k] = v[k] * b2 + w2 * gk * gk;
      p[k] -= step_size * (m[k] / (__builtin_sqrtf(v[k]) / root2 + eps));
    }
  }
}

void backward(const Child& child, long step) {
  const Group& g = *child.g;
  const int cols = (int)g.cols, n_train = (int)g.n_train;
  const int train_cols = (n_train + V - 1) / V * V;
  long widest = 0;
  for (int l = 0; l < g.depth + 2; ++l) widest = g.sizes[l] > widest ? g.sizes[l] : widest;
  float* buffers[2] = {g.scratch, g.scratch + widest * cols};
  float* grad = g.scratch + 2 * widest * cols;
  float* grad_bias = grad + widest * widest;
  const float step_size = (float)(g.lr / (1.0 - __builtin_pow(g.beta1, (double)step)));
  const float root2 = (float)__builtin_sqrt(1.0 - __builtin_pow(g.beta2, (double)step));
  const float* delta = child.output((int)g.depth + 1);
  for (int layer = (int)g.depth; layer >= 0; --layer) {
    int J = child.out(layer), K = child.in(layer);
    const float* h = child.input(layer);
    gradient(delta, h, cols, J, K, train_cols, n_train, grad, grad_bias);
    if (layer > 0) {
      float* up = buffers[layer % 2];
      int mode = g.acts[child.slot * g.depth + layer - 1] == RELU ? RELU_BACK : TANH_BACK;
      product(g.params + child.weight(layer), 1, child.row(layer), nullptr, delta, cols, K, J, up, mode, h,
              train_cols, n_train);
      delta = up;
    }
    adam(g, child.weight(layer), grad, J, K, child.row(layer), step_size, root2);
    adam(g, child.bias(layer), grad_bias, 1, J, 0, step_size, root2);
  }
}

// The weights after `epoch` in the ring, and the early-stopping bookkeeping of that epoch, for one child.
void validate(const Group& g, int64_t slot, int64_t epoch) {
  const long slots = g.slots;
  const double correct = g.stats[slots + slot], checksum = g.stats[2 * slots + slot];
  if (!__builtin_isfinite(checksum)) {
    g.event[slot] = 2;
    g.event_epoch[slot] = epoch;
    return;
  }
  double score;
  if (g.regression)
    score = g.sst <= 0.0 ? (correct == 0.0 ? 1.0 : 0.0) : 1.0 - correct / g.sst;
  else
    score = (double)(int64_t)correct / (double)g.n_val;
  const double loss = g.regression ? correct / (double)g.n_val : (double)g.stats[3 * slots + slot];
  double* curves = g.curves + slot * 3 * g.max_epochs;
  curves[g.max_epochs + epoch - 1] = score > 0.0 ? score : 0.0;
  curves[2 * g.max_epochs + epoch - 1] = loss;
  if (g.monitor_loss) score = -loss;
  if (score > g.best[slot] + g.min_gain) {
    g.best[slot] = score;
    g.waited[slot] = 0;
  } else {
    g.waited[slot] += 1;
  }
  float* ring = g.ring + ((epoch - 1) % g.window) * g.total;
  for (int layer = 0; layer <= g.depth; ++layer) {
    long weights = g.sizes[layer + 1] * g.sizes[layer], start = g.offsets[2 * layer] + slot * weights;
    long bias = g.offsets[2 * layer + 1] + slot * g.sizes[layer + 1];
    std::memcpy(ring + start, g.params + start, weights * sizeof(float));
    std::memcpy(ring + bias, g.params + bias, g.sizes[layer + 1] * sizeof(float));
  }
  if (g.waited[slot] >= g.patience || epoch == g.max_epochs) {
    g.event[slot] = 1;
    g.event_epoch[slot] = epoch;
  }
}

}  // namespace

extern "C" {

int64_t archsearch_kernel_abi() { return 3; }

// Train the children in slots active[0..n) from where the group stands until at least one of
// them has an event (it stops, or it diverged); returns how many have one. The caller takes those
// children out of `active` and calls again for the others. Returns -1 when `stop` was set.
int64_t archsearch_train(Group* g, const int64_t* active, int64_t n) {
  if (g->epoch == 0) {
    for (int64_t i = 0; i < n; ++i) forward(Child{g, active[i]});
    g->epoch = 1;
    g->validated = 1;
  }
  for (;;) {
    int64_t events = 0;
    const int64_t epoch = g->epoch;
    if (!g->validated) {
      for (int64_t i = 0; i < n; ++i) {
        validate(*g, active[i], epoch - 1);
        events += g->event[active[i]] != 0;
      }
      g->validated = 1;
      if (events) return events;
    }
    if (epoch > g->max_epochs) return 0;
    if (__atomic_load_n(&g->stop, __ATOMIC_RELAXED)) return -1;
    for (int64_t i = 0; i < n; ++i) {
      Child child{g, active[i]};
      const float loss = g->stats[child.slot];  // of the weights after epoch - 1: this epoch's loss
      g->curves[child.slot * 3 * g->max_epochs + epoch - 1] = loss;
      backward(child, epoch);
      forward(child);
      if (!__builtin_isfinite(loss)) {
        g->event[child.slot] = 3;
        g->event_epoch[child.slot] = epoch;
        events += 1;
      }
    }
    g->epoch = epoch + 1;
    g->validated = 0;
    if (events) return events;
  }
}

}
