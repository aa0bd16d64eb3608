# Plots sharpness.csv. Run from its directory: gnuplot sharpness.gp
set terminal pngcairo size 800,500
set output 'sharpness.png'
set title 'Fashion-MNIST MLP: largest Hessian eigenvalue of the loss during SGD training'
set xlabel 'epoch'
set ylabel 'lambda_{max}(H)'
set grid
set key bottom right
set yrange [0:23]
plot 'sharpness.csv' using 1:2 with linespoints lw 2 pt 7 title 'power iteration on HVPs', 20 with lines dt 2 lw 2 title '2 / learning rate'
