// The engine's interface to the outside: model files (checked before parsing, truncated, corrupt,
// hostile shapes and types: each an error naming what is wrong) and the C API.
#include "engine_test_util.h"

namespace {

using namespace engine_test;  // Builder, load_error, Model

TEST(Engine, CApiRunsAndReportsErrors) {
  Builder b({1, 1, 3});
  b.node("Relu", {"image"}, "r");
  b.node("Flatten", {"r"}, "y");
  const std::string bytes = b.bytes("y");
  char error[256];
  lowbit_model* m = lowbit_model_from_buffer(bytes.data(), bytes.size(), error, sizeof error);
  ASSERT_NE(m, nullptr) << error;
  int64_t shape[3];
  lowbit_model_input_shape(m, shape);
  EXPECT_EQ(shape[2], 3);
  EXPECT_EQ(lowbit_model_output_size(m), 3);
  const float x[3] = {-1, 0.5f, 2};
  float y[3];
  ASSERT_EQ(lowbit_model_run(m, x, 1, y, 1, error, sizeof error), 0) << error;
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(lowbit_model_run(m, nullptr, 1, y, 1, error, sizeof error), 1);
  EXPECT_NE(std::string(error).find("null"), std::string::npos);
  lowbit_model_destroy(m);
  EXPECT_EQ(lowbit_model_from_file("/nonexistent.onnx", error, sizeof error), nullptr);
  EXPECT_NE(std::string(error).find("/nonexistent.onnx"), std::string::npos);
  char tiny[8];
  EXPECT_EQ(lowbit_model_from_buffer("junk", 4, tiny, sizeof tiny), nullptr);
  EXPECT_EQ(std::string(tiny).size(), 7u);  // truncated, NUL-terminated
}

TEST(Engine, FilesAreCheckedBeforeParsing) {
  const std::string dir =
      ::testing::TempDir() + "lowbit-engine-files-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const auto from_file_error = [](const std::string& path) -> std::string {
    try {
      Model::from_file(path);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(from_file_error(dir), dir + ": is a directory, not a file");
  std::ofstream(dir + "/empty.onnx").close();
  EXPECT_EQ(from_file_error(dir + "/empty.onnx"),
            dir + "/empty.onnx: empty file (0 bytes), not an ONNX model");
  // lowbit's checksum trailer (a metadata_props entry): verified, and still a valid model.
  Builder b({1, 1, 3});
  b.node("Relu", {"image"}, "y0");
  b.node("Flatten", {"y0"}, "y");
  const std::string body = b.bytes("y");
  const std::string file = body + lowbit::io::onnx_checksum_trailer(body);
  onnx::ModelProto proto;
  ASSERT_TRUE(proto.ParseFromString(file));
  ASSERT_EQ(proto.metadata_props_size(), 1);
  EXPECT_EQ(proto.metadata_props(0).key(), "lowbit.crc32");
  EXPECT_EQ(Model::from_buffer(file.data(), file.size()).output_size(), 3);
  // A changed byte that still parses (a node's name) is caught by the checksum alone.
  const size_t name = file.find("y0_node");
  ASSERT_NE(name, std::string::npos);
  std::string bad = file;
  bad[name + 3] = 'm';
  EXPECT_NE(load_error(bad).find("corrupt file: its checksum"), std::string::npos)
      << load_error(bad);
  std::filesystem::remove_all(dir);
}

// ---- hostile files

std::string valid_model() {
  Builder b({1, 2, 2});
  b.init("w", {1, 1, 1, 1}, {2.0f});
  b.node("Conv", {"image", "w"}, "c");
  b.node("Flatten", {"c"}, "y");
  return b.bytes("y");
}

TEST(Engine, TruncatedAndCorruptFilesAreErrors) {
  const std::string good = valid_model();
  for (size_t n = 0; n < good.size(); n += 7) {
    const std::string e = load_error(good.substr(0, n));
    EXPECT_NE(e, "no error") << n;
  }
  std::string flipped = good;
  for (size_t i = 0; i < flipped.size(); i += 3) flipped[i] = static_cast<char>(~flipped[i]);
  EXPECT_NE(load_error(flipped), "no error");
  EXPECT_NE(load_error("").find("buffer"), std::string::npos);
}

TEST(Engine, HostileShapesAndTypesAreNamed) {
  {  // a huge initializer
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int i = 0; i < 4; ++i) t->add_dims(int64_t{1} << 20);
    b.node("Conv", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("initializer 'w'"), std::string::npos);
  }
  {  // a negative dimension
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(-4);
    b.node("Mul", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("negative dimension"), std::string::npos);
  }
  {  // data that does not match the dims
    Builder b({1, 2, 2});
    b.init("w", {1, 1, 3, 3}, {1, 2});
    b.node("Conv", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("8 bytes for 9 elements"), std::string::npos);
  }
  {  // a wrong type
    Builder b({1, 2, 2});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::STRING);
    b.node("Mul", {"image", "w"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("unsupported data type"), std::string::npos);
  }
  {  // a huge input
    Builder b({1 << 20, 1 << 20, 1 << 20});
    b.node("Flatten", {"image"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("too large"), std::string::npos);
  }
  {  // a cycle: a node reads its own output
    Builder b({1, 2, 2});
    b.node("Add", {"image", "y"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("input 'y' is not defined before use"),
              std::string::npos);
  }
  {  // a missing input, and an unknown operator
    Builder b({1, 2, 2});
    b.node("Mul", {"image", "nowhere"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("'nowhere'"), std::string::npos);
    Builder c({1, 2, 2});
    c.node("LSTM", {"image"}, "y");
    EXPECT_NE(load_error(c.bytes("y")).find("(LSTM): the engine does not know this operator"),
              std::string::npos);
  }
  {  // a kernel that does not fit the input
    Builder b({1, 2, 2});
    b.init("w", {1, 1, 3, 3}, std::vector<float>(9, 1.0f));
    b.node("Conv", {"image", "w"}, "c");
    b.node("Flatten", {"c"}, "y");
    EXPECT_NE(load_error(b.bytes("y")).find("empty"), std::string::npos);
  }
}

}  // namespace
