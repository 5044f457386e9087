// The one translation unit that compiles Asio's and Process v2's
// non-template code. Every other file is built with
// BOOST_ASIO_SEPARATE_COMPILATION / BOOST_PROCESS_V2_SEPARATE_COMPILATION and
// only declares it, which keeps each compile short on small machines.
#include <boost/asio/impl/src.hpp>
#include <type_traits>
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
#include <boost/type_traits/is_constructible.hpp>
#include <boost/type_traits/remove_pointer.hpp>
#include <boost/process/v2/src.hpp>
// Asio's SSL and Beast's non-template code, for the OpenAI client.
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
