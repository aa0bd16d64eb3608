#include "autodiff/print.hpp"

#include <xtensor/xio.hpp>

#include <sstream>

namespace ad {

template <class T>
std::ostream& operator<<(std::ostream& out, const Var<T>& v)
{
    if (!v.valid()) return out << "Var (invalid: empty, or its tape was cleared or destroyed)";
    const auto& r = v.tape().record(v.index());
    return out << "Var '" << r.op << "' at tape position " << v.index() << ", shape " << shape_str(v.shape())
               << (r.needs_grad ? " (needs grad)" : "") << ": " << v.value();
}

template <class T>
std::string listing(const Tape<T>& tape)
{
    std::ostringstream out;
    for (std::size_t i = 0; i < tape.size(); ++i) {
        const auto& r = tape.record(i);
        out << i << ": " << r.op << ' ' << shape_str(tape.value(i).shape());
        if (r.n_inputs) {
            out << " <- ";
            for (std::size_t k = 0; k < r.n_inputs; ++k) out << (k ? ", " : "") << tape.input(r, k);
        }
        if (r.needs_grad) out << " (needs grad)";
        out << '\n';
    }
    return out.str();
}

template std::ostream& operator<<(std::ostream&, const Var<float>&);
template std::ostream& operator<<(std::ostream&, const Var<double>&);
template std::string listing(const Tape<float>&);
template std::string listing(const Tape<double>&);

}  // namespace ad
