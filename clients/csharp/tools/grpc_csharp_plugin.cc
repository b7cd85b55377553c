// protoc-gen-grpc for C#, built from Debian's libgrpc_plugin_support (gRPC 1.51.1).
//
// Debian 12's protobuf-compiler-grpc ships the cpp, php, python and ruby
// plugins but not grpc_csharp_plugin, although its libgrpc_plugin_support
// contains gRPC's C# service generator. This file is the plugin's small
// main(): it calls that generator exactly as upstream's grpc_csharp_plugin
// 1.51 does, so the output is what Grpc.Tools 2.51 would generate.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/compiler/code_generator.h>
#include <google/protobuf/compiler/csharp/csharp_names.h>
#include <google/protobuf/compiler/plugin.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>

// Exported by libgrpc_plugin_support.so (src/compiler/csharp_generator.h in
// gRPC 1.51, which Debian does not install).
namespace grpc_csharp_generator {
std::string GetServices(const google::protobuf::FileDescriptor* file, bool generate_client,
                        bool generate_server, bool internal_access);
}  // namespace grpc_csharp_generator

namespace pb = google::protobuf;

class CSharpGrpcGenerator : public pb::compiler::CodeGenerator {
 public:
  uint64_t GetSupportedFeatures() const override { return FEATURE_PROTO3_OPTIONAL; }

  bool Generate(const pb::FileDescriptor* file, const std::string& parameter,
                pb::compiler::GeneratorContext* context, std::string* error) const override {
    std::vector<std::pair<std::string, std::string>> options;
    pb::compiler::ParseGeneratorParameter(parameter, &options);
    bool generate_client = true;
    bool generate_server = true;
    bool internal_access = false;
    std::string file_suffix = "Grpc.cs";
    for (const auto& [key, value] : options) {
      if (key == "no_client") {
        generate_client = false;
      } else if (key == "no_server") {
        generate_server = false;
      } else if (key == "internal_access") {
        internal_access = true;
      } else if (key == "file_suffix") {
        file_suffix = value;
      } else {
        *error = "Unknown generator option: " + key;
        return false;
      }
    }
    const std::string code = grpc_csharp_generator::GetServices(file, generate_client,
                                                                generate_server, internal_access);
    if (code.empty()) return true;  // no services, no file
    const std::string file_name =
        pb::compiler::csharp::GetOutputFile(file, file_suffix, false, "", error);
    if (file_name.empty()) return false;
    std::unique_ptr<pb::io::ZeroCopyOutputStream> output(context->Open(file_name));
    pb::io::CodedOutputStream coded_out(output.get());
    coded_out.WriteRaw(code.data(), static_cast<int>(code.size()));
    return true;
  }
};

int main(int argc, char* argv[]) {
  CSharpGrpcGenerator generator;
  return pb::compiler::PluginMain(argc, argv, &generator);
}
