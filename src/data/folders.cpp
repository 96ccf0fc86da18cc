// Reads folders of images by class (DIR/train/CLASS/*.png, DIR/test/CLASS/...), decoding PNG, JPEG
// and BMP with Debian's stb_image and resizing with stb_image_resize, on several threads.
#include <stb_image.h>
#include <stb_image_resize.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "formats.h"

namespace lowbit {
namespace data {
namespace detail {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxClasses = 256;  // labels are bytes

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// The sorted entries of dir that pass keep.
template <class Keep>
std::vector<fs::path> sorted_entries(const fs::path& dir, Keep keep) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) fail(dir.string(), "cannot list (" + ec.message() + ")");
  for (; it != end; it.increment(ec)) {
    if (!hidden(it->path()) && keep(*it)) out.push_back(it->path());
  }
  if (ec) fail(dir.string(), "cannot list (" + ec.message() + ")");
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> class_folders(const fs::path& split) {
  std::error_code ec;
  if (!fs::is_directory(split, ec)) {
    fail(split.string(), "missing: image folders need train/CLASS/ and test/CLASS/ folders");
  }
  std::vector<std::string> names;
  for (const fs::path& p :
       sorted_entries(split, [](const fs::directory_entry& e) { return e.is_directory(); })) {
    names.push_back(p.filename().string());
  }
  if (names.empty())
    fail(split.string(), "no class folders (expected " + split.string() + "/CLASS/)");
  return names;
}

struct Item {
  std::string path;
  uint8_t label = 0;
};

// The image files of each class of one split, labelled by the class's index in `classes`.
std::vector<Item> list_split(const fs::path& split, const std::vector<std::string>& classes) {
  std::vector<Item> items;
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path folder = split / classes[c];
    const auto files = sorted_entries(folder, [](const fs::directory_entry& e) {
      return !e.is_directory() && is_image_file(e.path());
    });
    if (files.empty()) {
      fail(folder.string(), "empty class: no .png, .jpg, .jpeg or .bmp files");
    }
    for (const fs::path& f : files) items.push_back({f.string(), static_cast<uint8_t>(c)});
  }
  return items;
}

// A decoded image, interleaved (rows x cols x channels) as stb gives it.
struct Decoded {
  std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, stbi_image_free};
  int width = 0, height = 0, channels = 0;  // channels as stored: 1 gray, 2 gray+alpha, 3, 4
};

Decoded decode(const std::string& path) {
  Decoded d;
  d.data.reset(stbi_load(path.c_str(), &d.width, &d.height, &d.channels, 0));
  if (!d.data) {
    const char* why = stbi_failure_reason();
    fail(path, std::string("cannot decode the image (") + (why ? why : "unknown error") +
                   "): corrupt, truncated or not a PNG, JPEG or BMP file");
  }
  return d;
}

// Colour channels: alpha is dropped.
int colour_channels(int stored) { return stored <= 2 ? 1 : 3; }

const char* channel_name(int channels) { return channels == 1 ? "grayscale" : "RGB"; }

// Writes the image into out (channels x height x width), resized when its size differs.
void store(const Decoded& d, int channels, int64_t height, int64_t width, uint8_t* out,
           const std::string& path) {
  const uint8_t* src = d.data.get();
  std::vector<uint8_t> resized;
  if (d.width != width || d.height != height) {
    resized.resize(static_cast<size_t>(width * height * d.channels));
    if (stbir_resize_uint8(src, d.width, d.height, 0, resized.data(), static_cast<int>(width),
                           static_cast<int>(height), 0, d.channels) == 0) {
      fail(path, "cannot resize the image to " + size_string(height, width));
    }
    src = resized.data();
  }
  const int64_t plane = height * width;
  for (int64_t i = 0; i < plane; ++i) {
    for (int c = 0; c < channels; ++c) out[c * plane + i] = src[i * d.channels + c];
  }
}

// Decodes items into split on `threads` threads; the first failing item (in order) is the error.
void decode_all(const std::vector<Item>& items, int channels, int64_t height, int64_t width,
                const std::string& first_path, int threads, Split& split) {
  Images& im = split.images;
  im.count = static_cast<int64_t>(items.size());
  im.channels = channels;
  im.rows = height;
  im.cols = width;
  const int64_t per = channels * height * width;
  im.pixels.assign(static_cast<size_t>(im.count * per), 0);
  split.labels.labels.resize(items.size());
  std::atomic<size_t> next{0};
  std::mutex mutex;
  size_t failed_at = items.size();
  std::exception_ptr error;
  auto work = [&] {
    for (size_t i = next++; i < items.size(); i = next++) {
      try {
        const Decoded d = decode(items[i].path);
        if (colour_channels(d.channels) != channels) {
          fail(items[i].path, std::string("mixed channel counts: this image is ") +
                                  channel_name(colour_channels(d.channels)) + ", " + first_path +
                                  " is " + channel_name(channels) +
                                  "; convert the data set to one of them");
        }
        store(d, channels, height, width, im.pixels.data() + i * per, items[i].path);
        split.labels.labels[i] = items[i].label;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (i < failed_at) {
          failed_at = i;
          error = std::current_exception();
        }
      }
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(items.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

bool has_image_folders(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir / "test", ec) || fs::is_directory(dir / "train", ec);
}

Dataset load_image_folders(const std::string& dir, const LoadOptions& options) {
  const fs::path root(dir);
  Dataset ds;
  ds.format = "folders";
  const fs::path train_dir = root / "train", test_dir = root / "test";
  const std::vector<std::string> test_classes = class_folders(test_dir);
  std::vector<std::string> classes = test_classes;
  if (options.with_train) {
    classes = class_folders(train_dir);
    const std::set<std::string> a(classes.begin(), classes.end());
    const std::set<std::string> b(test_classes.begin(), test_classes.end());
    for (const std::string& c : classes) {
      if (!b.count(c)) {
        fail((test_dir / c).string(), "missing: class '" + c + "' has training images (" +
                                          (train_dir / c).string() + ") but no test folder");
      }
    }
    for (const std::string& c : test_classes) {
      if (!a.count(c)) {
        fail((train_dir / c).string(), "missing: class '" + c + "' has test images (" +
                                           (test_dir / c).string() + ") but no training folder");
      }
    }
  }
  if (static_cast<int64_t>(classes.size()) > kMaxClasses) {
    fail(dir, std::to_string(classes.size()) + " classes: at most " + std::to_string(kMaxClasses) +
                  " are supported");
  }
  const std::vector<Item> train_items =
      options.with_train ? list_split(train_dir, classes) : std::vector<Item>{};
  const std::vector<Item> test_items = list_split(test_dir, classes);
  // The first image fixes the channels, and the size unless one is given.
  const std::string& first = (options.with_train ? train_items : test_items).front().path;
  const Decoded d = decode(first);
  const int channels = colour_channels(d.channels);
  const int64_t height = options.height > 0 ? options.height : d.height;
  const int64_t width = options.width > 0 ? options.width : d.width;
  const int threads = options.threads > 0
                          ? options.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (options.with_train) {
    decode_all(train_items, channels, height, width, first, threads, ds.train);
    ds.train.images_path = ds.train.labels_path = train_dir.string();
  }
  decode_all(test_items, channels, height, width, first, threads, ds.test);
  ds.test.images_path = ds.test.labels_path = test_dir.string();
  ds.class_names = classes;
  finish_dataset(ds);
  ds.num_classes = static_cast<int64_t>(classes.size());
  return ds;
}

}  // namespace detail
}  // namespace data
}  // namespace lowbit
