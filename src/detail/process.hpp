// Boost.Process v2 as shipped in Boost 1.81 forgets a few includes when
// built with BOOST_PROCESS_USE_STD_FS; every file that uses it goes through
// this header instead.
#pragma once

#include <type_traits>
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
#include <boost/type_traits/is_constructible.hpp>
#include <boost/type_traits/remove_pointer.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
