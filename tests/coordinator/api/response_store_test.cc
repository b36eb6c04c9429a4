// The stored Responses replies: bounded by bytes, least recently used first out.
#include "coordinator/api/response_store.h"

#include <string>

#include "gtest/gtest.h"

namespace glm::api {
namespace {

using nlohmann::json;

ResponseStore::Entry EntryOf(const std::string& text) {
  return {json{{"id", text}}, json::array({json{{"role", "user"}, {"content", text}}}), ""};
}

TEST(ResponseStoreTest, KeepsToItsBytesLeastRecentlyUsedFirst) {
  const std::string big(1000, 'x');
  // Three entries of ~2.3 KB (the text twice, and 256 bytes an entry) fit, a fourth does not.
  ResponseStore store(7200);
  for (const char* id : {"a", "b", "c"}) store.Put(id, EntryOf(big));
  EXPECT_EQ(store.stats().entries, 3);
  ASSERT_TRUE(store.Get("a", "").has_value());  // "a" is now the most recent: "b" goes next
  store.Put("d", EntryOf(big));
  EXPECT_FALSE(store.Get("b", "").has_value());
  EXPECT_TRUE(store.Get("a", "").has_value());
  EXPECT_EQ(store.Get("d", "")->conversation[0]["content"], big);
  EXPECT_EQ(store.stats().evicted, 1);
  EXPECT_LE(store.stats().bytes, 7200);

  store.Put("a", EntryOf("small"));  // replacing frees the old entry's bytes
  EXPECT_EQ(store.Get("a", "")->response["id"], "small");
  EXPECT_TRUE(store.Delete("a", ""));
  EXPECT_FALSE(store.Delete("a", ""));
  EXPECT_FALSE(store.Get("a", "").has_value());

  store.Put("huge", EntryOf(std::string(5000, 'y')));  // larger than the whole store: not kept
  EXPECT_FALSE(store.Get("huge", "").has_value());
  EXPECT_TRUE(store.Get("d", "").has_value());

  // An entry is its holder's: under another holder it reads as absent and cannot be deleted.
  ResponseStore::Entry owned = EntryOf("mine");
  owned.holder = "key0";
  store.Put("owned", owned);
  EXPECT_FALSE(store.Get("owned", "").has_value());
  EXPECT_FALSE(store.Get("owned", "key1").has_value());
  EXPECT_FALSE(store.Delete("owned", "key1"));
  EXPECT_TRUE(store.Get("owned", "key0").has_value());
  EXPECT_TRUE(store.Delete("owned", "key0"));

  store.SetCapacity(0);  // keep nothing
  EXPECT_EQ(store.stats().entries, 0);
  EXPECT_EQ(store.stats().bytes, 0);
  store.Put("e", EntryOf("e"));
  EXPECT_FALSE(store.Get("e", "").has_value());
}

}  // namespace
}  // namespace glm::api
