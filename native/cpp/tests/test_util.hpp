#pragma once
#include <unistd.h>

#include <cstdlib>
#include <string>

inline std::string temp_dir() {
  char tmpl[] = "/tmp/embedperf-cpp-test.XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  return d ? std::string(d) : std::string("/tmp");
}
